//! Micro benchmarks of the signing path: JWT-SVID signing alone, JWT-SVID
//! validation, X509-SVID issuance from a CSR, and SPIFFE ID parsing.
//!
//! `cargo bench --bench signing`. The figures belong in BENCHMARKS.md next
//! to `openssl speed ecdsap256` from the same run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use mayfly_ca::{CaConfig, CertificateAuthority, X509SvidRequest};
use mayfly_sdk::jwt::{Audience, JwtSvidValidator};
use mayfly_sdk::{SpiffeId, TrustDomain};

fn authority() -> (tempfile::TempDir, CertificateAuthority) {
    let dir = tempfile::tempdir().unwrap();
    let config = CaConfig::new(TrustDomain::new("example.org").unwrap());
    let (ca, _) =
        CertificateAuthority::load_or_create(&dir.path().join("ca"), &config, SystemTime::now())
            .unwrap();
    (dir, ca)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt(c: &mut Criterion) {
    let (_dir, ca) = authority();
    let id = SpiffeId::parse("spiffe://example.org/billing/api").unwrap();
    let audience = Audience::new("payments").unwrap();
    let signer = ca.jwt_signer();
    c.bench_function("jwt_svid_sign", |b| {
        b.iter(|| {
            signer
                .sign(black_box(&id), black_box(&audience), now(), now() + 300)
                .unwrap()
        })
    });
    let token = signer
        .sign(&id, &audience, now(), now() + 300)
        .unwrap()
        .token;
    let validator =
        JwtSvidValidator::new(ca.trust_domain().clone(), &[signer.authority()]).unwrap();
    c.bench_function("jwt_svid_validate", |b| {
        b.iter(|| {
            validator
                .validate(black_box(&token), &audience, now())
                .unwrap()
        })
    });
}

fn x509(c: &mut Criterion) {
    let (_dir, ca) = authority();
    let id = SpiffeId::parse("spiffe://example.org/billing/api").unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let dns: Vec<String> = Vec::new();
    c.bench_function("x509_svid_from_csr", |b| {
        b.iter(|| {
            ca.issue_x509_svid(&X509SvidRequest {
                csr_der: black_box(&csr),
                spiffe_id: &id,
                dns_names: &dns,
                ttl: Duration::from_secs(900),
                now: SystemTime::now(),
            })
            .unwrap()
        })
    });
}

fn spiffe_id(c: &mut Criterion) {
    c.bench_function("spiffe_id_parse", |b| {
        b.iter(|| {
            SpiffeId::parse(black_box("spiffe://example.org/ns/billing/sa/api-server")).unwrap()
        })
    });
}

criterion_group!(benches, jwt, x509, spiffe_id);
criterion_main!(benches);
