//! Loading and creating the CA directory: files, modes, restarts, refusals, rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use mayfly_ca::{CaConfig, CaError, CertificateAuthority, LoadReport};

const FILES: [&str; 5] = [
    "root.key",
    "root.crt",
    "intermediate.key",
    "intermediate.crt",
    "jwt.key",
];

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

#[test]
fn first_load_creates_every_file_with_the_right_mode() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data").join("ca");
    let (ca, report) = load(&dir, &config("example.org"), t0());

    assert!(report.created_root && report.created_intermediate && report.created_jwt_key);
    let expected: Vec<_> = FILES.iter().map(|name| dir.join(name)).collect();
    assert_eq!(report.files, expected);
    assert_eq!(mode(&dir), 0o700);
    for name in ["root.key", "intermediate.key", "jwt.key"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        assert!(read_pem_file(&dir.join(name)).starts_with("-----BEGIN PRIVATE KEY-----\n"));
    }
    for name in ["root.crt", "intermediate.crt"] {
        assert_eq!(mode(&dir.join(name)), 0o644, "{name}");
    }
    // Nothing else, no temporary files left behind.
    let mut present: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    present.sort();
    let mut wanted: Vec<_> = FILES.iter().map(|name| name.to_string()).collect();
    wanted.sort();
    assert_eq!(present, wanted);

    assert_eq!(
        read_pem_file(&dir.join("root.crt")),
        ca.root_certificate_pem()
    );
    assert_eq!(ca.trust_domain().as_str(), "example.org");
}

#[test]
fn restart_keeps_the_same_ca() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let (first, _) = load(&dir, &config("example.org"), t0());
    let (second, report) = load(&dir, &config("example.org"), at(days(1)));

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

    let fingerprint = second.root_fingerprint_sha256();
    assert_eq!(fingerprint.len(), 64);
    assert!(
        fingerprint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, second.root_certificate_der());
    assert_eq!(fingerprint, hex::encode(digest));
}

#[test]
fn key_files_readable_by_others_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = config("example.org");
    load(&dir, &config, t0());

    for name in ["root.key", "intermediate.key", "jwt.key"] {
        let path = dir.join(name);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        match CertificateAuthority::load_or_create(&dir, &config, t0()) {
            Err(CaError::KeyFileTooOpen {
                path: refused,
                mode,
            }) => {
                assert_eq!(refused, path);
                assert_eq!(mode, 0o644);
            }
            other => panic!("{name} at 0644: expected KeyFileTooOpen, got {other:?}"),
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
    let root = parse(ca.root_certificate_der());
    let intermediate = parse(ca.intermediate_certificate_der());

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
fn intermediate_is_renewed_with_a_quarter_of_its_life_left() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let mut config = config("example.org");
    config.intermediate_ttl = days(100);
    let (first, _) = load(&dir, &config, t0());

    // 70 days in, 30 of 100 left: kept.
    let (kept, report) = load(&dir, &config, at(days(70)));
    assert!(!report.created_intermediate);
    assert_eq!(
        kept.intermediate_certificate_der(),
        first.intermediate_certificate_der()
    );

    // 76 days in, 24 left: replaced, under the same root, and the new one verifies.
    let later = at(days(76));
    let (renewed, report) = load(&dir, &config, later);
    assert!(report.created_intermediate && !report.created_root && !report.created_jwt_key);
    assert_eq!(
        report.files,
        vec![dir.join("intermediate.key"), dir.join("intermediate.crt")]
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
    assert_eq!(mode(&dir.join("intermediate.key")), 0o600);

    let csr = hostile_csr(&p256_key());
    let id = spiffe_id("spiffe://example.org/w");
    let svid = renewed
        .issue_x509_svid(&mayfly_ca::X509SvidRequest {
            csr_der: &csr,
            spiffe_id: &id,
            dns_names: &[],
            ttl: Duration::from_secs(300),
            now: later,
        })
        .unwrap();
    webpki_verify(
        renewed.root_certificate_der(),
        renewed.intermediate_certificate_der(),
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
    let root = parse(ca.root_certificate_der());
    let intermediate = parse(ca.intermediate_certificate_der());
    assert_eq!(intermediate.validity().not_after, root.validity().not_after);
    assert_eq!(ca.intermediate_not_after(), t0() + days(10));
}

#[test]
fn missing_intermediate_is_recreated_but_a_missing_root_certificate_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let config = config("example.org");
    let (first, _) = load(&dir, &config, t0());

    fs::remove_file(dir.join("intermediate.crt")).unwrap();
    let (second, report) = load(&dir, &config, t0());
    assert!(report.created_intermediate && !report.created_root);
    assert_eq!(
        second.root_fingerprint_sha256(),
        first.root_fingerprint_sha256()
    );

    fs::remove_file(dir.join("root.crt")).unwrap();
    match CertificateAuthority::load_or_create(&dir, &config, t0()) {
        Err(CaError::IncompleteCaState { missing, present }) => {
            assert_eq!(missing, dir.join("root.crt"));
            assert_eq!(present, dir.join("root.key"));
        }
        other => panic!("expected IncompleteCaState, got {other:?}"),
    }
}

#[test]
fn a_replaced_root_key_is_detected() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let other = temp.path().join("other");
    let config = config("example.org");
    load(&dir, &config, t0());
    load(&other, &config, t0());
    fs::copy(other.join("root.key"), dir.join("root.key")).unwrap();
    assert!(matches!(
        CertificateAuthority::load_or_create(&dir, &config, t0()),
        Err(CaError::KeyCertificateMismatch { .. })
    ));
}

#[test]
fn bundle_holds_the_root_and_the_jwt_authority() {
    let (_dir, ca) = new_ca();
    let bundle = ca.bundle(7, Duration::from_secs(300));
    assert_eq!(bundle.trust_domain, *ca.trust_domain());
    assert_eq!(bundle.sequence, 7);
    assert_eq!(bundle.refresh_hint, Some(Duration::from_secs(300)));
    assert_eq!(
        bundle.x509_authorities,
        vec![ca.root_certificate_der().to_vec()]
    );
    assert_eq!(bundle.jwt_authorities, vec![ca.jwt_signer().authority()]);
}

#[test]
fn debug_output_shows_no_key_material() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    let (ca, _) = load(&dir, &config("example.org"), t0());
    let debug = format!("{ca:?} {:?}", ca.jwt_signer());
    assert!(debug.contains("[redacted]"));
    assert!(!debug.contains("BEGIN"));
    for name in ["root.key", "intermediate.key", "jwt.key"] {
        let pem_text = read_pem_file(&dir.join(name));
        for line in pem_text.lines().filter(|line| !line.starts_with("-----")) {
            assert!(!debug.contains(line), "{name} leaks into Debug");
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
