//! Loading and creating the CA directory: files, modes, the journal, restarts, refusals, and
//! adopting the earlier journal-less layout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::rotation::*;
use common::*;
use mayfly_ca::{
    AuthorityKind, AuthorityState, CaConfig, CaError, CertificateAuthority, LoadReport,
};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn load(
    dir: &Path,
    config: &CaConfig,
    now: std::time::SystemTime,
) -> (CertificateAuthority, LoadReport) {
    CertificateAuthority::load_or_create(dir, config, now).unwrap()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn key_files(report: &LoadReport) -> Vec<PathBuf> {
    report
        .files
        .iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "key"))
        .cloned()
        .collect()
}

#[test]
fn first_load_creates_every_file_with_the_right_mode() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data").join("ca");
    let (ca, report) = load(&dir, &config("example.org"), t0());

    assert!(report.created_root && report.created_intermediate && report.created_jwt_key);
    assert!(!report.adopted_legacy_layout);
    // Keys before certificates, everything before the journal that names it.
    let names: Vec<String> = report
        .files
        .iter()
        .map(|path| {
            assert_eq!(path.parent(), Some(dir.as_path()));
            path.file_name().unwrap().to_str().unwrap().to_string()
        })
        .collect();
    let shapes: Vec<(&str, &str)> = names
        .iter()
        .map(|name| {
            let (stem, extension) = name.rsplit_once('.').unwrap();
            (stem.split('-').next().unwrap(), extension)
        })
        .collect();
    assert_eq!(
        shapes,
        [
            ("root", "key"),
            ("root", "crt"),
            ("intermediate", "key"),
            ("intermediate", "crt"),
            ("jwt", "key"),
            ("rotation", "json"),
        ]
    );
    assert_eq!(mode(&dir), 0o700);
    for path in key_files(&report) {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        assert!(read_pem_file(&path).starts_with("-----BEGIN PRIVATE KEY-----\n"));
    }
    for path in report
        .files
        .iter()
        .filter(|p| p.extension().unwrap() == "crt")
    {
        assert_eq!(mode(path), 0o644, "{}", path.display());
    }
    assert_eq!(mode(&dir.join(JOURNAL)), 0o600);
    // Nothing else, no temporary files left behind.
    let mut wanted = names.clone();
    wanted.sort();
    assert_eq!(file_names(&dir), wanted);

    let root = record(&dir, "root", "active");
    assert_eq!(
        read_pem_file(&file_of(&dir, &root, "certificate")),
        ca.root_certificate_pem()
    );
    assert_eq!(root["id"], ca.root_fingerprint_sha256());
    assert_eq!(ca.trust_domain().as_str(), "example.org");
    assert_eq!(ca.generation(), 1);
    assert_eq!(report.events.len(), 3, "{:?}", report.events);
}

#[test]
fn the_journal_lists_every_authority_with_its_files_and_times() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let (ca, _) = load(&dir, &config("example.org"), t0());
    let journal = journal(&dir);
    assert_eq!(journal["version"], 1);
    assert_eq!(journal["trust_domain"], "example.org");
    assert_eq!(journal["generation"], 1);
    let now = T0_SECONDS as i64;

    let root = record(&dir, "root", "active");
    assert_eq!(root["created_at"], now);
    assert_eq!(root["activated_at"], now);
    assert!(root["old_since"].is_null() && root["retired_at"].is_null());
    assert_eq!(root["not_before"], now - 30);
    assert!(root["issuer"].is_null());

    let intermediate = record(&dir, "intermediate", "active");
    assert_eq!(intermediate["issuer"], root["id"]);
    assert_eq!(
        intermediate["id"],
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &ca.intermediate_certificate_der()
        ))
    );
    let id16 = &intermediate["id"].as_str().unwrap()[..16];
    assert_eq!(intermediate["key"], format!("intermediate-{id16}.key"));

    let jwt = record(&dir, "jwt-key", "active");
    assert_eq!(jwt["id"], ca.jwt_signer().key_id());
    assert!(jwt["certificate"].is_null() && jwt["not_after"].is_null());
}

#[test]
fn restart_keeps_the_same_ca() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = config("example.org");
    let (first, _) = load(&dir, &config, t0());
    let (second, report) = load(&dir, &config, at(days(1)));

    assert_eq!(report, LoadReport::default(), "nothing created on restart");
    assert_eq!(
        second.root_fingerprint_sha256(),
        first.root_fingerprint_sha256()
    );
    assert_eq!(second.root_certificate_der(), first.root_certificate_der());
    assert_eq!(
        second.intermediate_certificate_der(),
        first.intermediate_certificate_der()
    );
    assert_eq!(second.jwt_signer().key_id(), first.jwt_signer().key_id());
    assert_restart_keeps_state(&dir, &config, &first, at(days(1)));

    let fingerprint = second.root_fingerprint_sha256();
    assert_eq!(fingerprint.len(), 64);
    assert!(
        fingerprint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &second.root_certificate_der());
    assert_eq!(fingerprint, hex::encode(digest));
}

#[test]
fn key_files_readable_by_others_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = config("example.org");
    let (_, created) = load(&dir, &config, t0());
    let keys = key_files(&created);
    assert_eq!(keys.len(), 3);

    for path in keys {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        match CertificateAuthority::load_or_create(&dir, &config, t0()) {
            Err(CaError::KeyFileTooOpen {
                path: refused,
                mode,
            }) => {
                assert_eq!(refused, path);
                assert_eq!(mode, 0o644);
            }
            other => panic!(
                "{} at 0644: expected KeyFileTooOpen, got {other:?}",
                path.display()
            ),
        }
        // Positive control: back to 0600, it loads again, unchanged.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let (_, report) = load(&dir, &config, t0());
        assert_eq!(report, LoadReport::default());
    }
}

#[test]
fn another_trust_domain_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    load(&dir, &config("example.org"), t0());

    match CertificateAuthority::load_or_create(&dir, &config("other.org"), t0()) {
        Err(CaError::TrustDomainMismatch { configured, found }) => {
            assert_eq!(configured, "spiffe://other.org");
            assert_eq!(found, "spiffe://example.org");
        }
        other => panic!("expected TrustDomainMismatch, got {other:?}"),
    }
    assert!(CertificateAuthority::load_or_create(&dir, &config("example.org"), t0()).is_ok());
}

#[test]
fn root_and_intermediate_follow_the_signing_certificate_profile() {
    let (_dir, ca) = new_ca();
    let root_der = ca.root_certificate_der();
    let intermediate_der = ca.intermediate_certificate_der();
    let root = parse(&root_der);
    let intermediate = parse(&intermediate_der);

    for (cert, path_len) in [(&root, None), (&intermediate, Some(0))] {
        let basic = cert.basic_constraints().unwrap().expect("basicConstraints");
        assert!(basic.critical && basic.value.ca);
        assert_eq!(basic.value.path_len_constraint, path_len);
        let usage = cert.key_usage().unwrap().expect("keyUsage");
        assert!(usage.critical);
        assert!(usage.value.key_cert_sign() && usage.value.crl_sign());
        assert!(!usage.value.digital_signature());
        let names = names_of(cert);
        assert_eq!(names.uris, vec!["spiffe://example.org".to_string()]);
        assert!(names.dns.is_empty() && names.others == 0);
        assert_eq!(cert.raw_serial().len(), 16);
        assert_eq!(cert.raw_serial()[0] & 0x80, 0, "positive serial");
    }
    assert_eq!(
        root.subject().to_string(),
        "O=Mayfly, CN=Mayfly root CA example.org"
    );
    assert_eq!(root.subject(), root.issuer());
    root.verify_signature(None).unwrap();
    intermediate
        .verify_signature(Some(root.public_key()))
        .unwrap();
    assert_eq!(intermediate.issuer(), root.subject());

    let (root_ski, _) = key_identifiers(&root);
    let (intermediate_ski, intermediate_aki) = key_identifiers(&intermediate);
    assert!(root_ski.is_some() && intermediate_ski.is_some());
    assert_eq!(intermediate_aki, root_ski);
    assert!(intermediate.validity().not_after <= root.validity().not_after);
    assert_eq!(
        root.validity().not_after.timestamp() as u64,
        T0_SECONDS + 10 * 365 * 24 * 60 * 60
    );
}

#[test]
fn loading_never_rotates_a_valid_intermediate_but_replaces_an_expired_one() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let mut config = config("example.org");
    config.intermediate_ttl = days(100);
    let (first, _) = load(&dir, &config, t0());

    // 99 days in, past half and three quarters of its life: loading keeps it (rotation is
    // rotate_due's job, with a publication period first).
    let (kept, report) = load(&dir, &config, at(days(99)));
    assert_eq!(report, LoadReport::default());
    assert_eq!(
        kept.intermediate_certificate_der(),
        first.intermediate_certificate_der()
    );

    // 101 days in, expired: replaced at once under the same root, and the new one verifies.
    let later = at(days(101));
    let (renewed, report) = load(&dir, &config, later);
    assert!(report.created_intermediate && !report.created_root && !report.created_jwt_key);
    assert_eq!(report.files.len(), 3, "{:?}", report.files);
    assert_eq!(report.files[2], dir.join(JOURNAL));
    let new_record = record(&dir, "intermediate", "active");
    assert_eq!(report.files[0], file_of(&dir, &new_record, "key"));
    assert_eq!(report.files[1], file_of(&dir, &new_record, "certificate"));
    assert_eq!(mode(&report.files[0]), 0o600);
    // The expired one went straight to retired: nothing it signed is valid.
    let retired = record(&dir, "intermediate", "retired");
    assert!(!file_of(&dir, &retired, "key").exists());
    assert_eq!(
        report
            .events
            .iter()
            .map(|event| (event.from, event.to))
            .collect::<Vec<_>>(),
        [
            (None, AuthorityState::Active),
            (Some(AuthorityState::Active), AuthorityState::Retired)
        ]
    );
    assert!(
        report.events[0].detail.contains("expired"),
        "{:?}",
        report.events
    );
    assert_ne!(
        renewed.intermediate_certificate_der(),
        first.intermediate_certificate_der()
    );
    assert_eq!(
        renewed.root_fingerprint_sha256(),
        first.root_fingerprint_sha256()
    );
    assert_eq!(renewed.intermediate_not_after(), later + days(100));
    assert!(renewed.generation() > first.generation());

    let svid = issue_at(&renewed, later, Duration::from_secs(300));
    webpki_verify(
        &renewed.root_certificate_der(),
        &renewed.intermediate_certificate_der(),
        &svid.cert_chain_der[0],
        later,
        webpki::KeyUsage::client_auth(),
    )
    .unwrap();
}

#[test]
fn intermediate_never_outlives_the_root() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = config("example.org");
    config.root_ttl = days(10);
    config.intermediate_ttl = days(365);
    let (ca, _) = load(&temp.path().join("ca"), &config, t0());
    let root_der = ca.root_certificate_der();
    let intermediate_der = ca.intermediate_certificate_der();
    let root = parse(&root_der);
    let intermediate = parse(&intermediate_der);
    assert_eq!(intermediate.validity().not_after, root.validity().not_after);
    assert_eq!(ca.intermediate_not_after(), t0() + days(10));
}

#[test]
fn a_file_the_journal_names_must_exist_and_match() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = config("example.org");
    let (first, _) = load(&dir, &config, t0());
    let intermediate = record(&dir, "intermediate", "active");
    let certificate = file_of(&dir, &intermediate, "certificate");
    let saved = fs::read(&certificate).unwrap();

    fs::remove_file(&certificate).unwrap();
    match CertificateAuthority::load_or_create(&dir, &config, t0()) {
        Err(CaError::JournalFileMissing { path, journal }) => {
            assert_eq!(path, certificate);
            assert_eq!(journal, dir.join(JOURNAL));
        }
        other => panic!("expected JournalFileMissing, got {other:?}"),
    }

    // Another CA's intermediate in its place: the fingerprint gives it away.
    let (other, _) = load(&temp.path().join("other"), &config, t0());
    fs::write(
        &certificate,
        pem("CERTIFICATE", &other.intermediate_certificate_der()),
    )
    .unwrap();
    match CertificateAuthority::load_or_create(&dir, &config, t0()) {
        Err(error @ CaError::JournalFileMismatch { .. }) => {
            assert!(
                error.to_string().contains(certificate.to_str().unwrap()),
                "{error}"
            );
        }
        other => panic!("expected JournalFileMismatch, got {other:?}"),
    }

    // Positive control: the right file back, the same CA loads, nothing created.
    fs::write(&certificate, saved).unwrap();
    let (again, report) = load(&dir, &config, t0());
    assert_eq!(report, LoadReport::default());
    assert_eq!(
        again.intermediate_certificate_der(),
        first.intermediate_certificate_der()
    );
}

#[test]
fn a_replaced_root_key_is_detected() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let other = temp.path().join("other");
    let config = config("example.org");
    load(&dir, &config, t0());
    load(&other, &config, t0());
    let ours = file_of(&dir, &record(&dir, "root", "active"), "key");
    let theirs = file_of(&other, &record(&other, "root", "active"), "key");
    fs::copy(theirs, &ours).unwrap();
    assert!(matches!(
        CertificateAuthority::load_or_create(&dir, &config, t0()),
        Err(CaError::KeyCertificateMismatch { key, .. }) if key == ours
    ));
}

#[test]
fn a_damaged_journal_is_refused_naming_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = config("example.org");
    load(&dir, &config, t0());
    let text = fs::read_to_string(dir.join(JOURNAL)).unwrap();

    fs::write(dir.join(JOURNAL), &text[..text.len() / 2]).unwrap();
    assert!(matches!(
        CertificateAuthority::load_or_create(&dir, &config, t0()),
        Err(CaError::JournalInvalid { path, .. }) if path == dir.join(JOURNAL)
    ));
    // Two active JWT keys break an invariant.
    let mut journal: serde_json::Value = serde_json::from_str(&text).unwrap();
    let authorities = journal["authorities"].as_array_mut().unwrap();
    let mut copy = authorities[2].clone();
    copy["id"] = "another".into();
    authorities.push(copy);
    fs::write(dir.join(JOURNAL), journal.to_string()).unwrap();
    match CertificateAuthority::load_or_create(&dir, &config, t0()) {
        Err(CaError::JournalInvalid { reason, .. }) => {
            assert!(reason.contains("2 active jwt-key"), "{reason}")
        }
        other => panic!("expected JournalInvalid, got {other:?}"),
    }
    // Positive control.
    fs::write(dir.join(JOURNAL), &text).unwrap();
    assert!(CertificateAuthority::load_or_create(&dir, &config, t0()).is_ok());
}

#[test]
fn the_earlier_layout_is_adopted_as_it_is() {
    let temp = tempfile::tempdir().unwrap();
    let source = temp.path().join("source");
    let dir = temp.path().join("legacy");
    let config = config("example.org");
    let (original, _) = load(&source, &config, t0());
    make_legacy_layout(&source, &dir);
    assert!(!dir.join(JOURNAL).exists());

    let (adopted, report) = load(&dir, &config, at(days(1)));
    assert!(report.adopted_legacy_layout);
    assert!(!report.created_root && !report.created_intermediate && !report.created_jwt_key);
    assert_eq!(report.files, vec![dir.join(JOURNAL)]);
    assert_eq!(
        adopted.root_fingerprint_sha256(),
        original.root_fingerprint_sha256()
    );
    assert_eq!(
        adopted.intermediate_certificate_der(),
        original.intermediate_certificate_der()
    );
    assert_eq!(
        adopted.jwt_signer().key_id(),
        original.jwt_signer().key_id()
    );
    // The journal names the files as they are.
    assert_eq!(record(&dir, "root", "active")["key"], "root.key");
    assert_eq!(record(&dir, "root", "active")["certificate"], "root.crt");
    assert_eq!(
        record(&dir, "intermediate", "active")["certificate"],
        "intermediate.crt"
    );
    assert_eq!(record(&dir, "jwt-key", "active")["key"], "jwt.key");
    assert_eq!(mode(&dir.join(JOURNAL)), 0o600);

    // From now on it is an ordinary journal-managed CA.
    let again = assert_restart_keeps_state(&dir, &config, &adopted, at(days(2)));
    let status = again.status(at(days(2)));
    assert_eq!(status.authorities.len(), 3);
    assert!(
        status
            .authorities
            .iter()
            .all(|a| a.state == AuthorityState::Active)
    );
    assert!(status.authorities.iter().all(|a| a.key_on_server));
}

#[test]
fn the_earlier_layout_gets_a_new_intermediate_if_needed_but_not_a_guessed_root() {
    let temp = tempfile::tempdir().unwrap();
    let source = temp.path().join("source");
    let config = config("example.org");
    let (original, _) = load(&source, &config, t0());

    // Missing intermediate certificate: a new intermediate under the same root.
    let dir = temp.path().join("no-intermediate");
    make_legacy_layout(&source, &dir);
    fs::remove_file(dir.join("intermediate.crt")).unwrap();
    let (adopted, report) = load(&dir, &config, t0());
    assert!(report.adopted_legacy_layout && report.created_intermediate);
    assert!(!report.created_root);
    assert_eq!(
        adopted.root_fingerprint_sha256(),
        original.root_fingerprint_sha256()
    );
    assert_ne!(
        adopted.intermediate_certificate_der(),
        original.intermediate_certificate_der()
    );

    // Expired intermediate: replaced too.
    let dir = temp.path().join("expired");
    make_legacy_layout(&source, &dir);
    let (_, report) = load(&dir, &config, t0() + days(366));
    assert!(report.adopted_legacy_layout && report.created_intermediate);

    // Missing root certificate next to its key: refused, never guessed.
    let dir = temp.path().join("no-root-cert");
    make_legacy_layout(&source, &dir);
    fs::remove_file(dir.join("root.crt")).unwrap();
    match CertificateAuthority::load_or_create(&dir, &config, t0()) {
        Err(CaError::IncompleteCaState { missing, present }) => {
            assert_eq!(missing, dir.join("root.crt"));
            assert_eq!(present, dir.join("root.key"));
        }
        other => panic!("expected IncompleteCaState, got {other:?}"),
    }
    assert!(!dir.join(JOURNAL).exists(), "a refused load writes nothing");

    // An open key file in the earlier layout is refused as before.
    let dir = temp.path().join("open-key");
    make_legacy_layout(&source, &dir);
    fs::set_permissions(dir.join("jwt.key"), fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        CertificateAuthority::load_or_create(&dir, &config, t0()),
        Err(CaError::KeyFileTooOpen { .. })
    ));
}

#[test]
fn bundle_holds_the_root_and_the_jwt_authority() {
    let (_dir, ca) = new_ca();
    let bundle = ca.bundle(7, Duration::from_secs(300));
    assert_eq!(bundle.trust_domain, *ca.trust_domain());
    assert_eq!(bundle.sequence, 7);
    assert_eq!(bundle.refresh_hint, Some(Duration::from_secs(300)));
    assert_eq!(bundle.x509_authorities, vec![ca.root_certificate_der()]);
    assert_eq!(bundle.jwt_authorities, vec![ca.jwt_signer().authority()]);
}

#[test]
fn status_of_a_new_ca() {
    let (_dir, ca) = new_ca();
    let now = at(Duration::from_secs(60));
    let status = ca.status(now);
    assert!(status.warnings.is_empty(), "{:?}", status.warnings);
    let kinds: Vec<_> = status.authorities.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AuthorityKind::Root,
            AuthorityKind::Intermediate,
            AuthorityKind::JwtKey
        ]
    );
    let now_seconds = unix(now) as i64;
    let [root, intermediate, jwt] = &status.authorities[..] else {
        unreachable!()
    };
    assert_eq!(
        root.fingerprint_sha256.as_deref(),
        Some(ca.root_fingerprint_sha256().as_str())
    );
    assert_eq!(intermediate.issuer.as_deref(), Some(root.id.as_str()));
    assert_eq!(intermediate.live_until, Some(now_seconds + 3600));
    assert_eq!(root.live_until, intermediate.live_until);
    assert_eq!(jwt.live_until, Some(now_seconds + 3630));
    assert_eq!(jwt.fingerprint_sha256, None);
    assert_eq!(jwt.since, Some(T0_SECONDS as i64));
    // Serialisable for the admin API, with the names the CLI shows.
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["authorities"][2]["kind"], "jwt-key");
    assert_eq!(json["authorities"][2]["state"], "active");
    assert_eq!(AuthorityKind::JwtKey.to_string(), "jwt-key");
    assert_eq!(AuthorityState::Retired.to_string(), "retired");
}

#[test]
fn debug_output_shows_no_key_material() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let (ca, report) = load(&dir, &config("example.org"), t0());
    let debug = format!(
        "{ca:?} {:?} {:?} {:?}",
        ca.jwt_signer(),
        report,
        ca.status(t0())
    );
    assert!(debug.contains("[redacted]"));
    assert!(!debug.contains("BEGIN"));
    for path in key_files(&report) {
        let pem_text = read_pem_file(&path);
        for line in pem_text.lines().filter(|line| !line.starts_with("-----")) {
            assert!(!debug.contains(line), "{} leaks into Debug", path.display());
        }
    }
    let key = mayfly_ca::keys::SigningKey::generate().unwrap();
    let debug = format!("{key:?}");
    assert!(debug.contains("[redacted]") && !debug.contains("BEGIN"));
}

#[test]
fn the_authority_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CertificateAuthority>();
    assert_send_sync::<mayfly_ca::JwtSigner>();
}
