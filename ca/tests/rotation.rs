//! Rotation of intermediates, JWT keys and roots on a moving clock. Every leaf is checked
//! with `openssl verify` against the roots a relying party would hold at that moment, every
//! token with aws-lc-rs against the published JWKS, and every stage survives a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::rotation::*;
use common::*;
use mayfly_ca::{
    AuthorityKind, AuthorityState, CaConfig, CaError, CertificateAuthority, RotationEvent,
    create_root, sign_intermediate_csr,
};
use mayfly_sdk::jwt::Audience;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(60 * 60);
const SECOND: Duration = Duration::from_secs(1);

fn rotation_config() -> CaConfig {
    let mut config = config("example.org");
    config.intermediate_ttl = days(10);
    config.jwt_key_ttl = days(4);
    config.publish_ahead = 15 * MINUTE;
    config.max_x509_ttl = HOUR;
    config.max_jwt_ttl = HOUR + 30 * SECOND;
    config
}

fn time_of(seconds: &serde_json::Value) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.as_u64().unwrap())
}

/// (kind, from, to) of each event, for comparing with what a step should do.
fn shape(events: &[RotationEvent]) -> Vec<(AuthorityKind, Option<AuthorityState>, AuthorityState)> {
    events
        .iter()
        .map(|event| (event.kind, event.from, event.to))
        .collect()
}

fn of_kind(events: Vec<RotationEvent>, kind: AuthorityKind) -> Vec<RotationEvent> {
    events
        .into_iter()
        .filter(|event| event.kind == kind)
        .collect()
}

fn load(dir: &Path, config: &CaConfig, now: SystemTime) -> CertificateAuthority {
    CertificateAuthority::load_or_create(dir, config, now)
        .unwrap()
        .0
}

fn assert_leaf_verifies(roots_pem: &str, chain: &[Vec<u8>], time: SystemTime) {
    let (ok, output) = openssl_verify_chain(roots_pem, chain, time);
    assert!(ok, "openssl verify failed: {output}");
}

fn assert_leaf_fails(roots_pem: &str, chain: &[Vec<u8>], time: SystemTime) {
    let (ok, output) = openssl_verify_chain(roots_pem, chain, time);
    assert!(!ok, "openssl verify unexpectedly succeeded: {output}");
}

fn published_roots(ca: &CertificateAuthority) -> String {
    bundle_roots_pem(&ca.bundle(1, MINUTE))
}

fn assert_refused(result: Result<Vec<RotationEvent>, CaError>, needle: &str) -> String {
    match result {
        Err(CaError::RotationRefused { reason }) => {
            assert!(reason.contains(needle), "{needle:?} not in {reason:?}");
            reason
        }
        other => panic!("expected RotationRefused containing {needle:?}, got {other:?}"),
    }
}

fn assert_rejected<T: std::fmt::Debug>(result: Result<T, CaError>, needle: &str) {
    match result {
        Err(CaError::CertificateRejected { reason }) => {
            assert!(reason.contains(needle), "{needle:?} not in {reason:?}")
        }
        other => panic!("expected CertificateRejected containing {needle:?}, got {other:?}"),
    }
}

#[test]
fn intermediates_rotate_on_their_own_across_several_cycles() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let mut config = rotation_config();
    config.jwt_key_ttl = days(1000); // only intermediates move in this test
    let mut ca = load(&dir, &config, t0());
    let mut retired = 0;

    for cycle in 0..3 {
        let active = record(&dir, "intermediate", "active");
        let old_id = active["id"].as_str().unwrap().to_string();
        let old_der = ca.intermediate_certificate_der();
        let half = common::planned_half_life(&active);

        // Before half life nothing happens.
        assert_eq!(
            ca.rotate_due(half - SECOND).unwrap(),
            vec![],
            "cycle {cycle}"
        );

        // At half life a successor is prepared; the old one keeps signing.
        let generation = ca.generation();
        let events = ca.rotate_due(half).unwrap();
        assert_eq!(
            shape(&events),
            [(AuthorityKind::Intermediate, None, AuthorityState::Prepared)]
        );
        assert!(events[0].detail.contains("half its life"), "{events:?}");
        let new_id = events[0].id.clone();
        assert_eq!(
            ca.generation(),
            generation,
            "a prepared intermediate changes neither the bundle nor the signer"
        );
        let before_switch = issue_at(&ca, half, HOUR);
        assert_eq!(before_switch.cert_chain_der[1], old_der);
        assert_leaf_verifies(&published_roots(&ca), &before_switch.cert_chain_der, half);
        ca = assert_restart_keeps_state(&dir, &config, &ca, half);

        // It is activated after publish_ahead, not a second earlier.
        let activation = half + config.publish_ahead;
        assert_eq!(ca.rotate_due(activation - SECOND).unwrap(), vec![]);
        let events = ca.rotate_due(activation).unwrap();
        assert_eq!(
            shape(&events),
            [
                (
                    AuthorityKind::Intermediate,
                    Some(AuthorityState::Prepared),
                    AuthorityState::Active
                ),
                (
                    AuthorityKind::Intermediate,
                    Some(AuthorityState::Active),
                    AuthorityState::Old
                ),
            ]
        );
        assert_eq!(
            (events[0].id.as_str(), events[1].id.as_str()),
            (new_id.as_str(), old_id.as_str())
        );
        assert_eq!(ca.generation(), generation + 1);
        let after_switch = issue_at(&ca, activation, HOUR);
        assert_ne!(after_switch.cert_chain_der[1], old_der);
        assert_eq!(record(&dir, "intermediate", "active")["id"], new_id);
        assert_leaf_verifies(
            &published_roots(&ca),
            &after_switch.cert_chain_der,
            activation,
        );
        // The leaf from the old intermediate still verifies while the old one is old.
        assert_leaf_verifies(
            &published_roots(&ca),
            &before_switch.cert_chain_der,
            activation,
        );
        ca = assert_restart_keeps_state(&dir, &config, &ca, activation);

        // The old one is retired once its last leaf may have expired.
        let old_status = ca.status(activation);
        assert_eq!(
            ids_in(
                &old_status,
                AuthorityKind::Intermediate,
                AuthorityState::Old
            ),
            std::slice::from_ref(&old_id)
        );
        let old_record = record(&dir, "intermediate", "old");
        let live_until = activation + config.max_x509_ttl;
        assert_eq!(
            old_status
                .authorities
                .iter()
                .find(|a| a.id == old_id)
                .unwrap()
                .live_until,
            Some(unix(live_until) as i64)
        );
        assert_eq!(ca.rotate_due(live_until - SECOND).unwrap(), vec![]);
        let events = ca.rotate_due(live_until).unwrap();
        assert_eq!(
            shape(&events),
            [(
                AuthorityKind::Intermediate,
                Some(AuthorityState::Old),
                AuthorityState::Retired
            )]
        );
        assert_eq!(events[0].id, old_id);
        assert!(!file_of(&dir, &old_record, "key").exists());
        assert!(!file_of(&dir, &old_record, "certificate").exists());
        assert_eq!(
            ca.generation(),
            generation + 1,
            "retiring an intermediate changes no bundle"
        );
        retired += 1;
        assert_eq!(records(&dir, "intermediate", "retired").len(), retired);
        // Still issuing, and it verifies.
        let later = issue_at(&ca, live_until, HOUR);
        assert_leaf_verifies(&published_roots(&ca), &later.cert_chain_der, live_until);
        ca = assert_restart_keeps_state(&dir, &config, &ca, live_until);
    }
}

#[test]
fn an_intermediate_is_activated_early_when_the_active_one_cannot_sign_a_full_leaf() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let mut config = rotation_config();
    config.jwt_key_ttl = days(1000);
    config.publish_ahead = days(6); // longer than the rest of the active one's life
    let ca = load(&dir, &config, t0());
    let active = record(&dir, "intermediate", "active");
    let not_after = time_of(&active["not_after"]);
    let half = common::planned_half_life(&active);
    assert_eq!(ca.rotate_due(half).unwrap().len(), 1);

    // Exactly max_x509_ttl left: a full-length leaf still fits, nothing happens.
    assert_eq!(ca.rotate_due(not_after - HOUR).unwrap(), vec![]);
    let moment = not_after - HOUR + SECOND;
    let cut_short = issue_at(&ca, moment, HOUR);
    assert!(cut_short.clamped_to_signer);

    let events = ca.rotate_due(moment).unwrap();
    assert_eq!(
        shape(&events),
        [
            (
                AuthorityKind::Intermediate,
                Some(AuthorityState::Prepared),
                AuthorityState::Active
            ),
            (
                AuthorityKind::Intermediate,
                Some(AuthorityState::Active),
                AuthorityState::Old
            ),
        ]
    );
    assert!(
        events[0].detail.contains("activated early")
            && events[0].detail.contains("full-length leaf"),
        "{events:?}"
    );
    let full = issue_at(&ca, moment, HOUR);
    assert!(!full.clamped_to_signer);
    assert_eq!(full.not_after, moment + HOUR);
    assert_leaf_verifies(&published_roots(&ca), &full.cert_chain_der, moment);
    assert_leaf_verifies(&published_roots(&ca), &cut_short.cert_chain_der, moment);
}

#[test]
fn jwt_keys_rotate_on_their_own() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = rotation_config();
    let mut ca = load(&dir, &config, t0());
    let subject = spiffe_id("spiffe://example.org/workload");
    let audience = Audience::new("spiffe://example.org/api").unwrap();
    let sign = |signer: &mayfly_ca::JwtSigner, now: SystemTime| {
        let iat = unix(now) as i64;
        signer
            .sign(&subject, &audience, iat, iat + 300)
            .unwrap()
            .token
    };
    let kids = |ca: &CertificateAuthority| -> Vec<String> {
        ca.bundle(1, MINUTE)
            .jwt_authorities
            .iter()
            .map(|authority| authority.key_id.clone())
            .collect()
    };
    let first = ca.jwt_signer().key_id().to_string();
    let generation = ca.generation();
    let half = t0() + days(2);

    assert_eq!(ca.rotate_due(half - SECOND).unwrap(), vec![]);
    let events = ca.rotate_due(half).unwrap();
    assert_eq!(
        shape(&events),
        [(AuthorityKind::JwtKey, None, AuthorityState::Prepared)]
    );
    let second = events[0].id.clone();
    // Published before it signs.
    assert_eq!(kids(&ca), [first.clone(), second.clone()]);
    assert_eq!(ca.generation(), generation + 1);
    let token = sign(&ca.jwt_signer(), half);
    assert_eq!(token_key_id(&token), first);
    verify_jwt_with_bundle(&token, &ca.bundle(1, MINUTE)).unwrap();
    let key_file = file_of(&dir, &record(&dir, "jwt-key", "prepared"), "key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    ca = assert_restart_keeps_state(&dir, &config, &ca, half);

    let activation = half + config.publish_ahead;
    assert_eq!(ca.rotate_due(activation - SECOND).unwrap(), vec![]);
    let held = ca.jwt_signer();
    let events = ca.rotate_due(activation).unwrap();
    assert_eq!(
        shape(&events),
        [
            (
                AuthorityKind::JwtKey,
                Some(AuthorityState::Prepared),
                AuthorityState::Active
            ),
            (
                AuthorityKind::JwtKey,
                Some(AuthorityState::Active),
                AuthorityState::Old
            ),
        ]
    );
    assert_eq!(ca.generation(), generation + 2);
    assert_eq!(ca.jwt_signer().key_id(), second);
    let new_token = sign(&ca.jwt_signer(), activation);
    assert_eq!(token_key_id(&new_token), second);
    verify_jwt_with_bundle(&new_token, &ca.bundle(1, MINUTE)).unwrap();
    // The old key stays published: its tokens still verify, and a signer held from before
    // the switch keeps working.
    assert_eq!(kids(&ca), [second.clone(), first.clone()]);
    let late_old_token = sign(&held, activation);
    verify_jwt_with_bundle(&late_old_token, &ca.bundle(1, MINUTE)).unwrap();
    ca = assert_restart_keeps_state(&dir, &config, &ca, activation);

    let gone = activation + config.max_jwt_ttl;
    assert_eq!(ca.rotate_due(gone - SECOND).unwrap(), vec![]);
    assert_eq!(kids(&ca), [second.clone(), first.clone()]);
    let old_key_file = file_of(&dir, &record(&dir, "jwt-key", "old"), "key");
    let events = ca.rotate_due(gone).unwrap();
    assert_eq!(
        shape(&events),
        [(
            AuthorityKind::JwtKey,
            Some(AuthorityState::Old),
            AuthorityState::Retired
        )]
    );
    assert_eq!(events[0].id, first);
    assert_eq!(kids(&ca), std::slice::from_ref(&second));
    assert_eq!(ca.generation(), generation + 3);
    assert!(!old_key_file.exists());
    // Negative control: the old key's tokens no longer verify against the bundle.
    assert!(verify_jwt_with_bundle(&late_old_token, &ca.bundle(1, MINUTE)).is_err());
    verify_jwt_with_bundle(&sign(&ca.jwt_signer(), gone), &ca.bundle(1, MINUTE)).unwrap();
    ca = assert_restart_keeps_state(&dir, &config, &ca, gone);

    // The next cycle starts from the activation of the second key.
    assert_eq!(
        ca.rotate_due(activation + days(2) - SECOND).unwrap(),
        vec![]
    );
    assert_eq!(
        shape(&ca.rotate_due(activation + days(2)).unwrap()),
        [(AuthorityKind::JwtKey, None, AuthorityState::Prepared)]
    );
}

#[test]
fn root_rotation_prepare_activate_retire() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = rotation_config();
    let mut ca = load(&dir, &config, t0());
    let root0 = ca.root_certificate_der();
    let root0_pem = pem("CERTIFICATE", &root0);
    let intermediate0 = record(&dir, "intermediate", "active");
    let t1 = t0() + days(1);
    let old_leaf = issue_at(&ca, t1, HOUR);
    let generation = ca.generation();

    // Prepare: the new root joins the bundle, nothing else changes.
    let events = ca.prepare_root(t1).unwrap();
    assert_eq!(
        shape(&events),
        [(AuthorityKind::Root, None, AuthorityState::Prepared)]
    );
    let root1_id = events[0].id.clone();
    let bundle = ca.bundle(1, MINUTE);
    assert_eq!(bundle.x509_authorities.len(), 2);
    assert_eq!(bundle.x509_authorities[0], root0);
    assert_eq!(
        ca.root_certificate_pem()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
    assert_eq!(ca.root_certificate_der(), root0);
    assert_eq!(ca.generation(), generation + 1);
    let root1 = bundle.x509_authorities[1].clone();
    let root1_pem = pem("CERTIFICATE", &root1);
    assert_leaf_verifies(&root0_pem, &issue_at(&ca, t1, HOUR).cert_chain_der, t1);
    // One prepared root at a time.
    assert_refused(ca.prepare_root(t1), "already prepared");
    ca = assert_restart_keeps_state(&dir, &config, &ca, t1);

    // Activate: refused before publish_ahead; nothing changes.
    let status = ca.status(t1 + 14 * MINUTE);
    let reason = assert_refused(ca.activate_root(t1 + 14 * MINUTE, false), "publish_ahead");
    assert!(reason.contains("force"), "{reason}");
    assert_eq!(ca.status(t1 + 14 * MINUTE), status);

    let t2 = t1 + config.publish_ahead;
    let events = ca.activate_root(t2, false).unwrap();
    assert_eq!(
        shape(&events),
        [
            (
                AuthorityKind::Root,
                Some(AuthorityState::Prepared),
                AuthorityState::Active
            ),
            (
                AuthorityKind::Root,
                Some(AuthorityState::Active),
                AuthorityState::Old
            ),
            (AuthorityKind::Intermediate, None, AuthorityState::Active),
            (
                AuthorityKind::Intermediate,
                Some(AuthorityState::Active),
                AuthorityState::Old
            ),
        ]
    );
    assert_eq!(ca.root_certificate_der(), root1);
    assert_eq!(ca.root_fingerprint_sha256(), root1_id);
    assert_eq!(record(&dir, "intermediate", "active")["issuer"], root1_id);
    assert_eq!(ca.generation(), generation + 2);
    // New leaves chain to the new root only; old leaves still to the old root.
    let new_leaf = issue_at(&ca, t2, HOUR);
    assert_leaf_verifies(&root1_pem, &new_leaf.cert_chain_der, t2);
    assert_leaf_fails(&root0_pem, &new_leaf.cert_chain_der, t2);
    assert_leaf_verifies(&root0_pem, &old_leaf.cert_chain_der, t2);
    assert_leaf_fails(&root1_pem, &old_leaf.cert_chain_der, t2);
    // Both roots stay published, so relying parties accept both.
    assert_eq!(
        ca.bundle(1, MINUTE).x509_authorities,
        [root1.clone(), root0.clone()]
    );
    assert_leaf_verifies(&published_roots(&ca), &new_leaf.cert_chain_der, t2);
    assert_leaf_verifies(&published_roots(&ca), &old_leaf.cert_chain_der, t2);
    ca = assert_restart_keeps_state(&dir, &config, &ca, t2);

    // Retire: refused while the old intermediate's leaves may live, saying what and until
    // when; nothing changes.
    let early = t2 + 10 * MINUTE;
    let status = ca.status(early);
    let old_root = status
        .authorities
        .iter()
        .find(|a| a.state == AuthorityState::Old && a.kind == AuthorityKind::Root)
        .unwrap();
    assert_eq!(old_root.live_until, Some(unix(t2 + HOUR) as i64));
    let reason = assert_refused(
        ca.retire_root(early, false),
        "may have signed leaves valid until",
    );
    let intermediate0_id = intermediate0["id"].as_str().unwrap();
    assert!(reason.contains(&intermediate0_id[..16]), "{reason}");
    assert!(reason.contains("2025-06-02T00:15:00Z"), "{reason}");
    assert_eq!(ca.status(early), status);
    ca = assert_restart_keeps_state(&dir, &config, &ca, early);

    // Once those leaves have expired it succeeds without force.
    let late = t2 + HOUR;
    let events = ca.retire_root(late, false).unwrap();
    assert_eq!(
        shape(&events),
        [
            (
                AuthorityKind::Root,
                Some(AuthorityState::Old),
                AuthorityState::Retired
            ),
            (
                AuthorityKind::Intermediate,
                Some(AuthorityState::Old),
                AuthorityState::Retired
            ),
        ]
    );
    assert_eq!(
        ca.bundle(1, MINUTE).x509_authorities,
        std::slice::from_ref(&root1)
    );
    assert_eq!(ca.generation(), generation + 3);
    let retired_root = record(&dir, "root", "retired");
    assert!(!file_of(&dir, &retired_root, "key").exists());
    assert!(!file_of(&dir, &retired_root, "certificate").exists());
    assert!(!file_of(&dir, &intermediate0, "key").exists());
    // Relying parties holding the new bundle reject leaves of the old root.
    assert_leaf_fails(&published_roots(&ca), &old_leaf.cert_chain_der, t2);
    assert_leaf_verifies(
        &published_roots(&ca),
        &issue_at(&ca, late, HOUR).cert_chain_der,
        late,
    );
    ca = assert_restart_keeps_state(&dir, &config, &ca, late);
    assert_refused(ca.retire_root(late, false), "no old root");
    // The record stays for audit.
    let status = ca.status(late);
    assert_eq!(
        ids_in(&status, AuthorityKind::Root, AuthorityState::Retired),
        [retired_root["id"].as_str().unwrap().to_string()]
    );
}

#[test]
fn force_activates_and_retires_early_and_says_what_breaks() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = rotation_config();
    let ca = load(&dir, &config, t0());
    let t1 = t0() + days(1);
    let intermediate0 = record(&dir, "intermediate", "active")["id"]
        .as_str()
        .unwrap()
        .to_string();
    ca.prepare_root(t1).unwrap();
    let events = ca.activate_root(t1 + MINUTE, true).unwrap();
    assert!(events[0].detail.contains("forced"), "{events:?}");
    assert_eq!(events[0].to, AuthorityState::Active);

    assert_refused(ca.retire_root(t1 + 2 * MINUTE, false), &intermediate0[..16]);
    let events = ca.retire_root(t1 + 2 * MINUTE, true).unwrap();
    assert_eq!(events[0].to, AuthorityState::Retired);
    assert!(
        events[0].detail.contains("stop verifying")
            && events[0].detail.contains(&intermediate0[..16]),
        "{events:?}"
    );
    assert_eq!(ca.bundle(1, MINUTE).x509_authorities.len(), 1);
    assert_restart_keeps_state(&dir, &config, &ca, t1 + 3 * MINUTE);
}

#[test]
fn an_offline_root_is_activated_by_importing_an_intermediate_it_signed() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = rotation_config();
    let mut ca = load(&dir, &config, t0());
    let td = trust_domain("example.org");
    let t1 = t0() + days(1);

    // On the offline machine: a root; on the server: its certificate only.
    let (root1_pem, root1_key) = create_root(&td, days(3650), t1).unwrap();
    let events = ca
        .prepare_root_from_certificate(root1_pem.as_bytes(), t1)
        .unwrap();
    assert_eq!(
        shape(&events),
        [(AuthorityKind::Root, None, AuthorityState::Prepared)]
    );
    let root1_id = events[0].id.clone();
    assert!(record(&dir, "root", "prepared")["key"].is_null());
    let status = ca.status(t1);
    let root1_status = status
        .authorities
        .iter()
        .find(|a| a.id == root1_id)
        .unwrap();
    assert!(!root1_status.key_on_server);
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains("no key on this server")),
        "{:?}",
        status.warnings
    );
    assert_eq!(ca.bundle(1, MINUTE).x509_authorities.len(), 2);
    assert_refused(ca.activate_root(t1 + HOUR, false), "intermediate_csr");
    ca = assert_restart_keeps_state(&dir, &config, &ca, t1);

    // The server makes a pending key and its CSR; asking again gives a CSR for the same key.
    let t2 = t1 + HOUR;
    let csr = ca.intermediate_csr(t2).unwrap();
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{csr}"
    );
    assert_eq!(
        csr_public_key(&csr),
        csr_public_key(&ca.intermediate_csr(t2).unwrap())
    );
    assert_eq!(csr_uris(&csr), ["spiffe://example.org"]);
    let status = ca.status(t2);
    let pending = ids_in(
        &status,
        AuthorityKind::Intermediate,
        AuthorityState::Pending,
    );
    assert_eq!(pending.len(), 1);
    assert!(pending[0].starts_with("pending-"));
    assert!(
        status.warnings.iter().any(|w| w.contains("waiting")),
        "{:?}",
        status.warnings
    );
    ca = assert_restart_keeps_state(&dir, &config, &ca, t2);
    assert_eq!(
        csr_public_key(&csr),
        csr_public_key(&ca.intermediate_csr(t2).unwrap())
    );

    // Refused imports change nothing.
    let journal_before = std::fs::read(dir.join(JOURNAL)).unwrap();
    let status_before = ca.status(t2);
    let t3 = t2 + MINUTE;
    let (stranger_pem, stranger_key) = create_root(&td, days(3650), t1).unwrap();
    let by_stranger = sign_intermediate_csr(
        stranger_pem.as_bytes(),
        stranger_key.as_bytes(),
        csr.as_bytes(),
        &td,
        days(30),
        t2,
    )
    .unwrap();
    assert_rejected(
        ca.import_intermediate(by_stranger.as_bytes(), t3),
        "not signed by a published root",
    );
    let other_key_csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&p256_key())
        .unwrap()
        .pem()
        .unwrap();
    let wrong_key = sign_intermediate_csr(
        root1_pem.as_bytes(),
        root1_key.as_bytes(),
        other_key_csr.as_bytes(),
        &td,
        days(30),
        t2,
    )
    .unwrap();
    assert_rejected(
        ca.import_intermediate(wrong_key.as_bytes(), t3),
        "another key",
    );
    let other_domain = handmade_intermediate(&root1_pem, &root1_key, &csr, "spiffe://other.org", 0);
    assert_rejected(
        ca.import_intermediate(other_domain.as_bytes(), t3),
        "names spiffe://other.org",
    );
    let unconstrained =
        handmade_intermediate(&root1_pem, &root1_key, &csr, "spiffe://example.org", 1);
    assert_rejected(
        ca.import_intermediate(unconstrained.as_bytes(), t3),
        "pathLenConstraint 0",
    );
    assert_rejected(
        ca.import_intermediate(b"not a certificate", t3),
        "intermediate certificate",
    );
    assert_eq!(std::fs::read(dir.join(JOURNAL)).unwrap(), journal_before);
    assert_eq!(ca.status(t2), status_before);

    // Positive control: signed by the offline root, for the pending key.
    let signed = sign_intermediate_csr(
        root1_pem.as_bytes(),
        root1_key.as_bytes(),
        csr.as_bytes(),
        &td,
        days(30),
        t2,
    )
    .unwrap();
    let old_root = ca.root_certificate_der();
    let events = ca.import_intermediate(signed.as_bytes(), t3).unwrap();
    assert_eq!(
        shape(&events),
        [
            (
                AuthorityKind::Intermediate,
                Some(AuthorityState::Pending),
                AuthorityState::Active
            ),
            (
                AuthorityKind::Intermediate,
                Some(AuthorityState::Active),
                AuthorityState::Old
            ),
            (
                AuthorityKind::Root,
                Some(AuthorityState::Prepared),
                AuthorityState::Active
            ),
            (
                AuthorityKind::Root,
                Some(AuthorityState::Active),
                AuthorityState::Old
            ),
        ]
    );
    assert_eq!(ca.root_fingerprint_sha256(), root1_id);
    assert_eq!(pem("CERTIFICATE", &ca.root_certificate_der()), root1_pem);
    assert_eq!(
        pem("CERTIFICATE", &ca.intermediate_certificate_der()),
        signed
    );
    let leaf = issue_at(&ca, t3, HOUR);
    assert_leaf_verifies(&root1_pem, &leaf.cert_chain_der, t3);
    assert_leaf_fails(&pem("CERTIFICATE", &old_root), &leaf.cert_chain_der, t3);
    assert_refused(
        ca.import_intermediate(signed.as_bytes(), t3),
        "no intermediate key is pending",
    );
    ca = assert_restart_keeps_state(&dir, &config, &ca, t3);
    assert!(record(&dir, "root", "active")["key"].is_null());
    let status = ca.status(t3);
    assert!(
        !status
            .authorities
            .iter()
            .find(|a| a.id == root1_id)
            .unwrap()
            .key_on_server
    );

    // Past the imported intermediate's half life the CA cannot sign a successor itself:
    // rotate_due does not fail, and status says an offline signature is needed.
    let t4 = t3 + days(16);
    let events = of_kind(ca.rotate_due(t4).unwrap(), AuthorityKind::Intermediate);
    // Only the previous intermediate, old since t3, is retired; no successor is made.
    assert_eq!(
        shape(&events),
        [(
            AuthorityKind::Intermediate,
            Some(AuthorityState::Old),
            AuthorityState::Retired
        )]
    );
    let status = ca.status(t4);
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains("needs an offline signature")),
        "{:?}",
        status.warnings
    );
    ca = assert_restart_keeps_state(&dir, &config, &ca, t4);

    // The next intermediate of the (already active) offline root: only intermediates move.
    let csr = ca.intermediate_csr(t4).unwrap();
    let signed = sign_intermediate_csr(
        root1_pem.as_bytes(),
        root1_key.as_bytes(),
        csr.as_bytes(),
        &td,
        days(30),
        t4,
    )
    .unwrap();
    let t5 = t4 + MINUTE;
    let events = ca.import_intermediate(signed.as_bytes(), t5).unwrap();
    assert_eq!(
        shape(&events),
        [
            (
                AuthorityKind::Intermediate,
                Some(AuthorityState::Pending),
                AuthorityState::Active
            ),
            (
                AuthorityKind::Intermediate,
                Some(AuthorityState::Active),
                AuthorityState::Old
            ),
        ]
    );
    assert_eq!(ca.root_fingerprint_sha256(), root1_id);
    let status = ca.status(t5);
    assert!(
        !status
            .warnings
            .iter()
            .any(|w| w.contains("offline signature")),
        "{:?}",
        status.warnings
    );
    assert_leaf_verifies(&root1_pem, &issue_at(&ca, t5, HOUR).cert_chain_der, t5);
    assert_restart_keeps_state(&dir, &config, &ca, t5);
}

/// The public key of a PEM CSR.
fn csr_public_key(csr_pem: &str) -> Vec<u8> {
    let params = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
    rcgen::PublicKeyData::subject_public_key_info(&params.public_key)
}

fn csr_uris(csr_pem: &str) -> Vec<String> {
    let params = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
    params
        .params
        .subject_alt_names
        .iter()
        .filter_map(|name| match name {
            rcgen::SanType::URI(uri) => Some(uri.as_str().to_string()),
            _ => None,
        })
        .collect()
}

/// An intermediate for the CSR's key made with rcgen directly, with a chosen URI SAN and
/// path length: what a careless offline signer might produce.
fn handmade_intermediate(
    root_pem: &str,
    root_key_pem: &str,
    csr_pem: &str,
    uri: &str,
    path_len: u8,
) -> String {
    let mut request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
    let params = &mut request.params;
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.not_before = time::OffsetDateTime::from_unix_timestamp(T0_SECONDS as i64).unwrap();
    params.not_after = params.not_before + time::Duration::days(30);
    let key = rcgen::KeyPair::from_pem(root_key_pem).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(root_pem, key).unwrap();
    request.signed_by(&issuer).unwrap().pem()
}

#[test]
fn refusals_each_next_to_a_positive_control() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = rotation_config();
    let ca = load(&dir, &config, t0());
    let td = trust_domain("example.org");
    let t1 = t0() + days(1);
    let unchanged = |ca: &CertificateAuthority| ca.status(t1);
    let before = unchanged(&ca);

    assert_refused(ca.activate_root(t1, true), "no root is prepared");
    assert_refused(ca.retire_root(t1, true), "no old root");
    assert_refused(
        ca.import_intermediate(
            pem("CERTIFICATE", &ca.intermediate_certificate_der()).as_bytes(),
            t1,
        ),
        "no intermediate key is pending",
    );

    // Roots handed in: another trust domain, expired, not self-signed, not a root at all.
    let (foreign, _) = create_root(&trust_domain("other.org"), days(100), t1).unwrap();
    assert_rejected(
        ca.prepare_root_from_certificate(foreign.as_bytes(), t1),
        "names spiffe://other.org",
    );
    let (expired, _) = create_root(&td, days(1), t0() - days(2)).unwrap();
    assert_rejected(
        ca.prepare_root_from_certificate(expired.as_bytes(), t1),
        "expired",
    );
    let intermediate = pem("CERTIFICATE", &ca.intermediate_certificate_der());
    assert_rejected(
        ca.prepare_root_from_certificate(intermediate.as_bytes(), t1),
        "pathLenConstraint 0",
    );
    let leaf = issue_at(&ca, t1, HOUR);
    assert_rejected(
        ca.prepare_root_from_certificate(
            pem("CERTIFICATE", &leaf.cert_chain_der[0]).as_bytes(),
            t1,
        ),
        "not a CA",
    );
    assert_rejected(
        ca.prepare_root_from_certificate(b"garbage", t1),
        "root certificate",
    );
    assert_eq!(unchanged(&ca), before);

    // Positive control: a good one is accepted, once.
    let (good, good_key) = create_root(&td, days(100), t1).unwrap();
    ca.prepare_root_from_certificate(good.as_bytes(), t1)
        .unwrap();
    assert_rejected(
        ca.prepare_root_from_certificate(good.as_bytes(), t1),
        "already known",
    );
    let (another, _) = create_root(&td, days(100), t1).unwrap();
    assert_refused(
        ca.prepare_root_from_certificate(another.as_bytes(), t1),
        "already prepared",
    );

    // Offline signing refuses a root that does not match its key or the trust domain.
    let csr = ca.intermediate_csr(t1).unwrap();
    let (_, wrong_key) = create_root(&td, days(100), t1).unwrap();
    assert_rejected(
        sign_intermediate_csr(
            good.as_bytes(),
            wrong_key.as_bytes(),
            csr.as_bytes(),
            &td,
            days(30),
            t1,
        ),
        "does not belong",
    );
    assert_rejected(
        sign_intermediate_csr(
            good.as_bytes(),
            good_key.as_bytes(),
            csr.as_bytes(),
            &trust_domain("other.org"),
            days(30),
            t1,
        ),
        "expected exactly spiffe://other.org",
    );
    assert_rejected(
        sign_intermediate_csr(
            good.as_bytes(),
            good_key.as_bytes(),
            b"junk",
            &td,
            days(30),
            t1,
        ),
        "CSR",
    );
    let signed = sign_intermediate_csr(
        good.as_bytes(),
        good_key.as_bytes(),
        csr.as_bytes(),
        &td,
        days(30),
        t1,
    )
    .unwrap();
    // The intermediate never outlives its root, whatever the asked lifetime.
    let long = sign_intermediate_csr(
        good.as_bytes(),
        good_key.as_bytes(),
        csr.as_bytes(),
        &td,
        days(1000),
        t1,
    )
    .unwrap();
    let long_der = x509_parser::pem::parse_x509_pem(long.as_bytes())
        .unwrap()
        .1
        .contents;
    assert_eq!(
        parse(&long_der).validity().not_after.timestamp() as u64,
        unix(t1 + days(100))
    );
    ca.import_intermediate(signed.as_bytes(), t1).unwrap();
    assert_restart_keeps_state(&dir, &config, &ca, t1);
}

#[test]
fn errors_say_who_is_at_fault() {
    let refused = CaError::RotationRefused {
        reason: "x".to_string(),
    };
    assert!(refused.is_refusal() && !refused.is_caller_error());
    let rejected = CaError::CertificateRejected {
        reason: "x".to_string(),
    };
    assert!(rejected.is_caller_error() && !rejected.is_refusal());
}

#[test]
fn a_prepared_root_can_be_withdrawn_before_activation() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = rotation_config();
    let ca = load(&dir, &config, t0());
    let t1 = t0() + days(1);
    let before = ca.bundle(0, Duration::ZERO).x509_authorities;
    ca.prepare_root(t1).unwrap();
    assert_eq!(ca.bundle(0, Duration::ZERO).x509_authorities.len(), 2);
    let events = ca.retire_root(t1 + MINUTE, false).unwrap();
    assert_eq!(
        shape(&events),
        vec![(
            AuthorityKind::Root,
            Some(AuthorityState::Prepared),
            AuthorityState::Retired
        )]
    );
    assert!(events[0].detail.contains("withdrawn"), "{events:?}");
    // Back to the one root; leaves still verify against it.
    assert_eq!(ca.bundle(0, Duration::ZERO).x509_authorities, before);
    assert_leaf_verifies(
        &published_roots(&ca),
        &issue_at(&ca, t1 + MINUTE, HOUR).cert_chain_der,
        t1 + MINUTE,
    );
    // Nothing left to withdraw or retire.
    assert_refused(ca.retire_root(t1 + MINUTE, true), "no old root");
}

#[test]
fn the_next_rotation_step_is_when_rotate_due_takes_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = rotation_config();
    let ca = load(&dir, &config, t0());
    let due = |kind: AuthorityKind| -> SystemTime {
        let (_, at) = ca
            .next_rotation_steps()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .unwrap_or_else(|| panic!("no step for {kind:?}"));
        UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap())
    };
    // Twice per kind: the step that prepares a successor, then the one
    // that activates it; a second before each, nothing happens.
    for kind in [AuthorityKind::JwtKey, AuthorityKind::Intermediate] {
        for expected in [AuthorityState::Prepared, AuthorityState::Active] {
            let at = due(kind);
            assert!(at > t0(), "{kind:?} {expected:?}");
            assert_eq!(of_kind(ca.rotate_due(at - SECOND).unwrap(), kind), vec![]);
            let events = of_kind(ca.rotate_due(at).unwrap(), kind);
            assert!(
                events.iter().any(|event| event.to == expected),
                "{kind:?} at its predicted time: {:?}",
                shape(&events)
            );
        }
    }
    // Roots are the operator's: no step predicted for them.
    assert!(
        ca.next_rotation_steps()
            .iter()
            .all(|(kind, _)| *kind != AuthorityKind::Root)
    );
}
