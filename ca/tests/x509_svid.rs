//! X509-SVIDs and server certificates, checked by verifiers that are not ours.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use common::*;
use mayfly_ca::{CaError, X509SvidRequest};
use rcgen::KeyPair;

const WORKLOAD: &str = "spiffe://example.org/billing/api";

fn request<'a>(
    csr: &'a [u8],
    id: &'a mayfly_sdk::SpiffeId,
    dns: &'a [String],
    ttl: Duration,
) -> X509SvidRequest<'a> {
    X509SvidRequest {
        csr_der: csr,
        spiffe_id: id,
        dns_names: dns,
        ttl,
        now: t0(),
    }
}

#[test]
fn leaf_from_a_hostile_csr_carries_only_the_entry_identity() {
    let (_dir, ca) = new_ca();
    let key = p256_key();
    let csr = hostile_csr(&key);
    let id = spiffe_id(WORKLOAD);
    let dns = vec!["api.billing.internal".to_string()];
    let svid = ca
        .issue_x509_svid(&request(&csr, &id, &dns, Duration::from_secs(600)))
        .unwrap();

    assert_eq!(svid.spiffe_id, id);
    assert_eq!(svid.cert_chain_der.len(), 2);
    assert_eq!(svid.cert_chain_der[1], ca.intermediate_certificate_der());
    let leaf = parse(&svid.cert_chain_der[0]);

    // Exactly one URI SAN, the entry's; the entry's DNS names; nothing from the CSR.
    let names = names_of(&leaf);
    assert_eq!(names.uris, vec![WORKLOAD.to_string()]);
    assert_eq!(names.dns, dns);
    assert!(names.ips.is_empty());
    assert_eq!(names.others, 0);

    // Not a CA, critical basicConstraints present.
    let basic = leaf.basic_constraints().unwrap().expect("basicConstraints");
    assert!(basic.critical);
    assert!(!basic.value.ca);
    assert!(basic.value.path_len_constraint.is_none());

    // digitalSignature only, critical.
    let usage = leaf.key_usage().unwrap().expect("keyUsage");
    assert!(usage.critical);
    assert!(usage.value.digital_signature());
    assert_eq!(
        usage.value.flags, 1,
        "only digitalSignature: {:?}",
        usage.value
    );

    // serverAuth + clientAuth, nothing else.
    let extended = leaf.extended_key_usage().unwrap().expect("extKeyUsage");
    assert!(extended.value.server_auth && extended.value.client_auth);
    assert!(!extended.value.any && !extended.value.code_signing);
    assert!(extended.value.other.is_empty());

    // The CSR's public key, the CSR's subject nowhere.
    assert_eq!(leaf.public_key().raw, spki_of(&key).as_slice());
    assert_eq!(leaf.subject().to_string(), "O=SPIFFE");
    assert!(!String::from_utf8_lossy(&svid.cert_chain_der[0]).contains("Evil"));

    // Chained by key identifier to the intermediate; random 128-bit serial as reported.
    let intermediate_der = ca.intermediate_certificate_der();
    let intermediate = parse(&intermediate_der);
    let (intermediate_ski, _) = key_identifiers(&intermediate);
    let (leaf_ski, leaf_aki) = key_identifiers(&leaf);
    assert!(leaf_ski.is_some());
    assert_eq!(leaf_aki, intermediate_ski);
    assert_eq!(leaf.issuer(), intermediate.subject());
    assert_eq!(hex::encode(leaf.raw_serial()), svid.serial_hex);
    assert_eq!(svid.serial_hex.len(), 32);
    assert_eq!(leaf.version().0, 2, "X.509 v3");

    // Every extension we emit is one we understand; no unknown critical extension.
    for extension in leaf.extensions() {
        assert!(
            !matches!(
                extension.parsed_extension(),
                x509_parser::extensions::ParsedExtension::UnsupportedExtension { .. }
            ),
            "unexpected extension {}",
            extension.oid
        );
    }
}

#[test]
fn leaf_chains_to_the_root_for_webpki_and_openssl() {
    let (_dir, ca) = new_ca();
    let key = p256_key();
    let csr = hostile_csr(&key);
    let id = spiffe_id(WORKLOAD);
    let dns = vec!["api.billing.internal".to_string()];
    let svid = ca
        .issue_x509_svid(&request(&csr, &id, &dns, Duration::from_secs(600)))
        .unwrap();
    let leaf = &svid.cert_chain_der[0];
    let root = &ca.root_certificate_der();
    let intermediate = &ca.intermediate_certificate_der();
    let during = at(Duration::from_secs(60));

    webpki_verify(
        root,
        intermediate,
        leaf,
        during,
        webpki::KeyUsage::client_auth(),
    )
    .unwrap();
    webpki_verify(
        root,
        intermediate,
        leaf,
        during,
        webpki::KeyUsage::server_auth(),
    )
    .unwrap();
    for purpose in ["sslclient", "sslserver"] {
        let (ok, output) = openssl_verify(root, intermediate, leaf, during, purpose);
        assert!(ok, "openssl verify -purpose {purpose}: {output}");
    }

    // Negative controls: the same leaf after its expiry, and under another CA's root.
    let after = at(Duration::from_secs(601));
    assert!(matches!(
        webpki_verify(
            root,
            intermediate,
            leaf,
            after,
            webpki::KeyUsage::client_auth()
        ),
        Err(webpki::Error::CertExpired { .. })
    ));
    let (ok, output) = openssl_verify(root, intermediate, leaf, after, "sslclient");
    assert!(!ok, "expired leaf accepted: {output}");

    let (_other_dir, other) = new_ca();
    assert_ne!(
        other.root_fingerprint_sha256(),
        ca.root_fingerprint_sha256()
    );
    let other_root = &other.root_certificate_der();
    assert!(
        webpki_verify(
            other_root,
            intermediate,
            leaf,
            during,
            webpki::KeyUsage::client_auth()
        )
        .is_err()
    );
    let (ok, output) = openssl_verify(other_root, intermediate, leaf, during, "sslclient");
    assert!(!ok, "leaf accepted under a foreign root: {output}");
}

#[test]
fn leaf_from_another_ca_fails_openssl_verify_next_to_our_own() {
    let (_dir, ca) = new_ca();
    let (_other_dir, other) = new_ca();
    let key = p256_key();
    let csr = hostile_csr(&key);
    let id = spiffe_id(WORKLOAD);
    let ours = ca
        .issue_x509_svid(&request(&csr, &id, &[], Duration::from_secs(600)))
        .unwrap();
    let theirs = other
        .issue_x509_svid(&request(&csr, &id, &[], Duration::from_secs(600)))
        .unwrap();
    let during = at(Duration::from_secs(60));
    let root = &ca.root_certificate_der();
    let intermediate = &ca.intermediate_certificate_der();

    let (ok, output) = openssl_verify(
        root,
        intermediate,
        &ours.cert_chain_der[0],
        during,
        "sslclient",
    );
    assert!(ok, "{output}");
    let (ok, output) = openssl_verify(
        root,
        intermediate,
        &theirs.cert_chain_der[0],
        during,
        "sslclient",
    );
    assert!(!ok, "foreign leaf accepted: {output}");
    // Even with its own intermediate supplied, it does not reach our root.
    let (ok, output) = openssl_verify(
        root,
        &other.intermediate_certificate_der(),
        &theirs.cert_chain_der[0],
        during,
        "sslclient",
    );
    assert!(!ok, "foreign chain accepted: {output}");
}

#[test]
fn every_supported_csr_key_type_is_certified_and_verifies() {
    let (_dir, ca) = new_ca();
    let id = spiffe_id(WORKLOAD);
    let keys = [
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
    ];
    for key in &keys {
        let csr = hostile_csr(key);
        let svid = ca
            .issue_x509_svid(&request(&csr, &id, &[], Duration::from_secs(600)))
            .unwrap();
        let leaf = &svid.cert_chain_der[0];
        assert_eq!(parse(leaf).public_key().raw, spki_of(key).as_slice());
        let (ok, output) = openssl_verify(
            &ca.root_certificate_der(),
            &ca.intermediate_certificate_der(),
            leaf,
            at(Duration::from_secs(1)),
            "sslclient",
        );
        assert!(ok, "{:?}: {output}", key.algorithm());
        webpki_verify(
            &ca.root_certificate_der(),
            &ca.intermediate_certificate_der(),
            leaf,
            at(Duration::from_secs(1)),
            webpki::KeyUsage::client_auth(),
        )
        .unwrap();
    }
}

#[test]
fn csr_with_a_flipped_signature_byte_is_refused_next_to_the_valid_one() {
    let (_dir, ca) = new_ca();
    let key = p256_key();
    let csr = hostile_csr(&key);
    let id = spiffe_id(WORKLOAD);
    assert!(
        ca.issue_x509_svid(&request(&csr, &id, &[], Duration::from_secs(600)))
            .is_ok()
    );

    // The signature BIT STRING ends the CSR; its last byte is part of s.
    let mut flipped = csr.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    let error = ca
        .issue_x509_svid(&request(&flipped, &id, &[], Duration::from_secs(600)))
        .unwrap_err();
    assert!(matches!(error, CaError::CsrBadSignature), "{error:?}");
    assert!(error.is_caller_error());

    let error = ca
        .issue_x509_svid(&request(
            b"\x30\x03\x02\x01\x00",
            &id,
            &[],
            Duration::from_secs(600),
        ))
        .unwrap_err();
    assert!(matches!(error, CaError::CsrMalformed { .. }), "{error:?}");
}

#[test]
fn leaf_lifetime_is_clamped_to_the_intermediate() {
    let (_dir, ca) = new_ca();
    let key = p256_key();
    let csr = hostile_csr(&key);
    let id = spiffe_id(WORKLOAD);

    // Short lifetime: exactly now - 30 s .. now + ttl.
    let short = ca
        .issue_x509_svid(&request(&csr, &id, &[], Duration::from_secs(600)))
        .unwrap();
    assert!(!short.clamped_to_signer);
    assert_eq!(unix(short.not_before), T0_SECONDS - 30);
    assert_eq!(unix(short.not_after), T0_SECONDS + 600);
    let leaf = parse(&short.cert_chain_der[0]);
    assert_eq!(
        leaf.validity().not_before.timestamp() as u64,
        T0_SECONDS - 30
    );
    assert_eq!(
        leaf.validity().not_after.timestamp() as u64,
        T0_SECONDS + 600
    );

    // Longer than the intermediate has left: cut to the intermediate's notAfter.
    let long = ca
        .issue_x509_svid(&request(&csr, &id, &[], days(400)))
        .unwrap();
    assert!(long.clamped_to_signer);
    assert_eq!(long.not_after, ca.intermediate_not_after());
    assert_eq!(
        unix(ca.intermediate_not_after()),
        T0_SECONDS + 365 * 24 * 60 * 60
    );
    let leaf = parse(&long.cert_chain_der[0]);
    let intermediate_der = ca.intermediate_certificate_der();
    let intermediate = parse(&intermediate_der);
    assert_eq!(leaf.validity().not_after, intermediate.validity().not_after);

    // Once the intermediate has expired nothing is issued.
    let late = X509SvidRequest {
        now: ca.intermediate_not_after(),
        ..request(&csr, &id, &[], Duration::from_secs(600))
    };
    assert!(matches!(
        ca.issue_x509_svid(&late),
        Err(CaError::SignerExpired { .. })
    ));
    let zero = request(&csr, &id, &[], Duration::ZERO);
    assert!(matches!(
        ca.issue_x509_svid(&zero),
        Err(CaError::InvalidTtl { .. })
    ));
}

#[test]
fn identities_outside_the_trust_domain_or_without_a_path_are_refused() {
    let (_dir, ca) = new_ca();
    let key = p256_key();
    let csr = hostile_csr(&key);
    let ttl = Duration::from_secs(600);

    let good = spiffe_id(WORKLOAD);
    assert!(ca.issue_x509_svid(&request(&csr, &good, &[], ttl)).is_ok());

    let foreign = spiffe_id("spiffe://other.org/billing/api");
    let error = ca
        .issue_x509_svid(&request(&csr, &foreign, &[], ttl))
        .unwrap_err();
    assert!(
        matches!(error, CaError::ForeignTrustDomain { .. }),
        "{error:?}"
    );
    assert!(error.is_caller_error());

    let bare = spiffe_id("spiffe://example.org");
    let error = ca
        .issue_x509_svid(&request(&csr, &bare, &[], ttl))
        .unwrap_err();
    assert!(
        matches!(error, CaError::SpiffeIdWithoutPath { .. }),
        "{error:?}"
    );

    let bad_dns = vec!["not a host".to_string()];
    let error = ca
        .issue_x509_svid(&request(&csr, &good, &bad_dns, ttl))
        .unwrap_err();
    assert!(matches!(error, CaError::InvalidDnsName { .. }), "{error:?}");
}

#[test]
fn server_certificate_has_uri_dns_and_ip_names_and_a_matching_fresh_key() {
    let (_dir, ca) = new_ca();
    let id = spiffe_id("spiffe://example.org/mayfly/server");
    let dns = vec!["mayfly.internal".to_string(), "localhost".to_string()];
    let ips = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let server = ca
        .issue_server_certificate(&id, &dns, &ips, days(1), t0())
        .unwrap();
    assert_eq!(server.cert_chain_der.len(), 2);
    assert_eq!(unix(server.not_after), T0_SECONDS + 24 * 60 * 60);

    let leaf = parse(&server.cert_chain_der[0]);
    let names = names_of(&leaf);
    assert_eq!(names.uris, vec![id.as_str().to_string()]);
    assert_eq!(names.dns, dns);
    assert_eq!(
        names.ips,
        vec![vec![127, 0, 0, 1], Ipv6Addr::LOCALHOST.octets().to_vec()]
    );
    assert_eq!(names.others, 0);
    assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
    assert_eq!(leaf.key_usage().unwrap().unwrap().value.flags, 1);
    let extended = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(extended.server_auth && extended.client_auth);

    // The returned key is the certified one.
    let key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &server.private_key_pkcs8_der,
    )
    .unwrap();
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key().as_ref()
    );

    let during = at(Duration::from_secs(60));
    let (ok, output) = openssl_verify(
        &ca.root_certificate_der(),
        &ca.intermediate_certificate_der(),
        &server.cert_chain_der[0],
        during,
        "sslserver",
    );
    assert!(ok, "{output}");
    webpki_verify(
        &ca.root_certificate_der(),
        &ca.intermediate_certificate_der(),
        &server.cert_chain_der[0],
        during,
        webpki::KeyUsage::server_auth(),
    )
    .unwrap();

    // Debug never shows the key.
    let debug = format!("{server:?}");
    assert!(debug.contains("[redacted]"));
    assert!(!debug.contains(&hex::encode(&server.private_key_pkcs8_der[..])[..40]));
    assert!(!debug.contains(&format!("{:?}", &server.private_key_pkcs8_der[..16])));
}

/// A CSR made by the openssl CLI, DER.
fn openssl_csr(dir: &std::path::Path, name: &str, args: &[&str]) -> Vec<u8> {
    let csr = dir.join(format!("{name}.csr"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-nodes",
            "-subj",
            "/CN=ignored",
            "-outform",
            "DER",
        ])
        .args(args)
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(&csr)
        .output()
        .expect("the openssl CLI must be installed");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    std::fs::read(csr).unwrap()
}

#[test]
fn csrs_made_by_openssl_including_rsa_pss_are_accepted_and_bad_pss_salt_is_not() {
    let (_dir, ca) = new_ca();
    let temp = tempfile::tempdir().unwrap();
    let id = spiffe_id(WORKLOAD);
    let ttl = Duration::from_secs(600);
    let good = [
        (
            "p256",
            vec![
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-sha256",
            ],
        ),
        (
            "p384",
            vec![
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-sha384",
            ],
        ),
        ("ed25519", vec!["-newkey", "ed25519"]),
        ("rsa", vec!["-newkey", "rsa:2048", "-sha256"]),
        (
            "pss",
            vec![
                "-newkey",
                "rsa:2048",
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
            ],
        ),
    ];
    for (name, args) in good {
        let csr = openssl_csr(temp.path(), name, &args);
        let svid = ca
            .issue_x509_svid(&request(&csr, &id, &[], ttl))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (ok, output) = openssl_verify(
            &ca.root_certificate_der(),
            &ca.intermediate_certificate_der(),
            &svid.cert_chain_der[0],
            at(Duration::from_secs(1)),
            "sslclient",
        );
        assert!(ok, "{name}: {output}");
    }

    let short_salt = openssl_csr(
        temp.path(),
        "pss-salt-20",
        &[
            "-newkey",
            "rsa:2048",
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:20",
        ],
    );
    let error = ca
        .issue_x509_svid(&request(&short_salt, &id, &[], ttl))
        .unwrap_err();
    assert!(
        matches!(error, CaError::CsrUnsupportedSignature { .. }),
        "{error:?}"
    );

    let small_rsa = openssl_csr(temp.path(), "rsa1024", &["-newkey", "rsa:1024", "-sha256"]);
    let error = ca
        .issue_x509_svid(&request(&small_rsa, &id, &[], ttl))
        .unwrap_err();
    assert!(
        matches!(error, CaError::CsrUnsupportedKey { .. }),
        "{error:?}"
    );

    let sha1 = openssl_csr(temp.path(), "sha1", &["-newkey", "rsa:2048", "-sha1"]);
    let error = ca
        .issue_x509_svid(&request(&sha1, &id, &[], ttl))
        .unwrap_err();
    assert!(
        matches!(error, CaError::CsrUnsupportedSignature { .. }),
        "{error:?}"
    );
}
