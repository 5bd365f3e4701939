//! Helpers shared by the integration tests: a fixed clock, CSRs, and independent verifiers
//! (rustls-webpki, the `openssl` CLI, x509-parser).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use mayfly_ca::{CaConfig, CertificateAuthority};
use mayfly_sdk::{SpiffeId, TrustDomain};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::{CertificateDer, UnixTime};

pub mod rotation;

/// 2025-06-01T00:00:00Z; every test runs on this clock, not on the wall clock.
pub const T0_SECONDS: u64 = 1_748_736_000;

pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0_SECONDS)
}

pub fn at(offset: Duration) -> SystemTime {
    t0() + offset
}

pub fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn days(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 60 * 60)
}

pub fn trust_domain(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

pub fn spiffe_id(id: &str) -> SpiffeId {
    SpiffeId::parse(id).unwrap()
}

pub fn config(name: &str) -> CaConfig {
    CaConfig::new(trust_domain(name))
}

/// A fresh CA for `example.org` in a temporary directory.
pub fn new_ca() -> (tempfile::TempDir, CertificateAuthority) {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) =
        CertificateAuthority::load_or_create(&dir.path().join("ca"), &config("example.org"), t0())
            .unwrap();
    (dir, ca)
}

/// A CSR that asks for everything it must not get: CA:true, keyCertSign, a subject, extra DNS
/// and URI SANs (one of them a SPIFFE ID of an admin, one from a foreign trust domain).
pub fn hostile_csr(key: &KeyPair) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "spiffe://example.org/admin");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Evil Corp");
    params.subject_alt_names = vec![
        SanType::DnsName("evil.example.com".try_into().unwrap()),
        SanType::URI("spiffe://example.org/admin".try_into().unwrap()),
        SanType::URI("spiffe://other.org/x".try_into().unwrap()),
    ];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serialize_request(key).unwrap().der().to_vec()
}

pub fn p256_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

pub fn spki_of(key: &KeyPair) -> Vec<u8> {
    rcgen::PublicKeyData::subject_public_key_info(key)
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Verifies `leaf` with rustls-webpki as an end-entity certificate chaining through
/// `intermediate` to the trust anchor `root`, for `usage`, at `time`.
pub fn webpki_verify(
    root: &[u8],
    intermediate: &[u8],
    leaf: &[u8],
    time: SystemTime,
    usage: webpki::KeyUsage,
) -> Result<(), webpki::Error> {
    let root = CertificateDer::from(root.to_vec());
    let anchors = [webpki::anchor_from_trusted_cert(&root)?];
    let leaf = CertificateDer::from(leaf.to_vec());
    let end_entity = webpki::EndEntityCert::try_from(&leaf)?;
    let intermediates = [CertificateDer::from(intermediate.to_vec())];
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(unix(time))),
            usage,
            None,
            None,
        )
        .map(|_| ())
}

/// Runs `openssl verify -x509_strict` on `leaf` with `root` as the only trust anchor and
/// `intermediate` as untrusted chain material, at `time`. Returns (success, output).
pub fn openssl_verify(
    root: &[u8],
    intermediate: &[u8],
    leaf: &[u8],
    time: SystemTime,
    purpose: &str,
) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, der: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem("CERTIFICATE", der)).unwrap();
        path
    };
    let root_path = write("root.pem", root);
    let intermediate_path = write("intermediate.pem", intermediate);
    let leaf_path = write("leaf.pem", leaf);
    let output = Command::new("openssl")
        .arg("verify")
        .arg("-x509_strict")
        .args(["-purpose", purpose])
        .args(["-attime", &unix(time).to_string()])
        .arg("-CAfile")
        .arg(&root_path)
        .arg("-untrusted")
        .arg(&intermediate_path)
        .arg(&leaf_path)
        .output()
        .expect("the openssl CLI must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let ok = output.status.success() && text.contains(&format!("{}: OK", leaf_path.display()));
    (ok, text)
}

pub fn read_pem_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The URI and DNS SANs of a certificate, and how many other names it has.
pub struct Names {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<Vec<u8>>,
    pub others: usize,
    pub critical: bool,
}

pub fn names_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Names {
    use x509_parser::extensions::GeneralName;
    let san = cert
        .subject_alternative_name()
        .unwrap()
        .expect("a SAN extension");
    let mut names = Names {
        uris: Vec::new(),
        dns: Vec::new(),
        ips: Vec::new(),
        others: 0,
        critical: san.critical,
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(uri) => names.uris.push((*uri).to_string()),
            GeneralName::DNSName(dns) => names.dns.push((*dns).to_string()),
            GeneralName::IPAddress(ip) => names.ips.push(ip.to_vec()),
            _ => names.others += 1,
        }
    }
    names
}

/// (subject key identifier, authority key identifier)
pub fn key_identifiers(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    use x509_parser::extensions::ParsedExtension;
    let mut subject = None;
    let mut authority = None;
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => subject = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority = aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => {}
        }
    }
    (subject, authority)
}

pub fn parse(der: &[u8]) -> x509_parser::certificate::X509Certificate<'_> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty());
    cert
}

/// The middle of an intermediate's planned life, as the CA computes it from its journal
/// record: from its creation (its `notBefore` is backdated 30 s for clock skew) to its
/// `notAfter`.
pub fn planned_half_life(record: &serde_json::Value) -> std::time::SystemTime {
    let not_before = record["not_before"].as_i64().unwrap();
    let not_after = record["not_after"].as_i64().unwrap();
    let created_at = record["created_at"].as_i64().unwrap();
    let start = created_at
        .min(not_before + 30)
        .max(not_before)
        .min(not_after);
    let half = start + (not_after - start) / 2;
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(half).unwrap())
}
