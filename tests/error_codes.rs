//! A client's mistake is never a server error, end to end: CSRs signed
//! with algorithms we refuse are InvalidArgument naming the algorithm, not
//! INTERNAL, whatever the join token, and write no ERROR line; a join token
//! asked for another identity is refused without being spent.
//!
//! Every test in this binary expects no ERROR line at all, so they share
//! one process-wide log capture.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use common::{TRUST_DOMAIN, TestBroker};
use mayfly::attest::join_token::JoinTokenSecret;
use mayfly_sdk::proto::v1 as pb;
use tonic::Code;
use tracing_subscriber::layer::SubscriberExt as _;

// ---------------------------------------------------------------------------
// The log capture

/// One logged event: its level and what it said (message and fields).
#[derive(Clone, Debug)]
struct Line {
    level: tracing::Level,
    text: String,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Line>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(Line {
            level: *event.metadata().level(),
            text: text.0,
        });
    }
}

/// Everything logged in this process so far (the capture is installed on
/// first use, before any broker starts).
fn logged() -> Vec<Line> {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    let capture = CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::set_global_default(subscriber).unwrap();
        capture
    });
    capture.0.lock().unwrap().clone()
}

fn assert_no_error_line() {
    let errors: Vec<Line> = logged()
        .into_iter()
        .filter(|line| line.level == tracing::Level::ERROR)
        .collect();
    assert!(errors.is_empty(), "ERROR lines were logged: {errors:?}");
}

// ---------------------------------------------------------------------------
// CSRs signed with an algorithm of our choice

/// A P-256 key, usable by rcgen (the positive control) and by aws-lc-rs
/// (to sign a CSR with any hash).
struct P256 {
    key: EcdsaKeyPair,
    rcgen: rcgen::KeyPair,
}

impl P256 {
    fn generate() -> Self {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &SystemRandom::new(),
        )
        .unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
                .unwrap();
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
        let rcgen =
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ECDSA_P256_SHA256)
                .unwrap();
        P256 { key, rcgen }
    }

    /// A CSR made and signed by rcgen with ecdsa-with-SHA256: what we accept.
    fn csr_sha256(&self) -> Vec<u8> {
        rcgen::CertificateParams::default()
            .serialize_request(&self.rcgen)
            .unwrap()
            .der()
            .to_vec()
    }

    /// The same request, signed by hand with `hash` and labelled with the
    /// signature algorithm `oid_der` (a DER OBJECT IDENTIFIER).
    ///
    /// aws-lc-rs signs with P-256 only over SHA-256, so the digest is made
    /// here and handed over as a 32-byte value: ECDSA signs the leftmost 256
    /// bits of a longer hash (SHA-512), and a shorter one (SHA-1) as an
    /// integer, which left zero-padding does not change (SEC 1, 4.1.3).
    /// The signature is checked with aws-lc-rs' verifier for that very
    /// algorithm, so the broker refuses the algorithm, not a bad signature.
    fn csr_signed_with(
        &self,
        hash: &'static digest::Algorithm,
        verifier: &'static dyn signature::VerificationAlgorithm,
        oid_der: &[u8],
    ) -> Vec<u8> {
        use x509_parser::prelude::FromDer as _;
        let control = self.csr_sha256();
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&control)
                .unwrap();
        let info = parsed.certification_request_info.raw;
        let hashed = digest::digest(hash, info);
        let mut value = [0u8; 32];
        let bytes = hashed.as_ref();
        if bytes.len() >= 32 {
            value.copy_from_slice(&bytes[..32]);
        } else {
            value[32 - bytes.len()..].copy_from_slice(bytes);
        }
        let as_sha256 = digest::Digest::import_less_safe(&value, &digest::SHA256).unwrap();
        let signed = self.key.sign_digest(&as_sha256).unwrap();
        signature::UnparsedPublicKey::new(verifier, self.key.public_key().as_ref())
            .verify(info, signed.as_ref())
            .expect("a valid signature under the algorithm it names");
        let mut bit_string = vec![0u8];
        bit_string.extend_from_slice(signed.as_ref());
        let mut body = info.to_vec();
        body.extend(der(0x30, oid_der));
        body.extend(der(0x03, &bit_string));
        der(0x30, &body)
    }
}

/// A DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// ecdsa-with-SHA1, 1.2.840.10045.4.1.
const ECDSA_WITH_SHA1: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
/// ecdsa-with-SHA512, 1.2.840.10045.4.3.4.
const ECDSA_WITH_SHA512: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];

async fn attest(
    broker: &TestBroker,
    token: &str,
    csr: Vec<u8>,
    spiffe_id: &str,
) -> Result<pb::X509SvidResponse, tonic::Status> {
    broker
        .broker()
        .await
        .attest_and_issue(pb::AttestAndIssueRequest {
            evidence: Some(pb::attest_and_issue_request::Evidence::JoinToken(
                pb::JoinTokenEvidence {
                    token: token.into(),
                },
            )),
            csr,
            spiffe_id: spiffe_id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn assert_status(result: Result<pb::X509SvidResponse, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("expected a refusal");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{status:?} lacks {needle:?}"
    );
}

#[tokio::test]
async fn a_csr_signed_with_a_refused_hash_is_invalid_argument_naming_it_never_internal() {
    logged();
    let broker = TestBroker::start().await;
    let entry = broker.create_entry("/csr", &["db"]).await;
    let token = broker.join_token(&entry.id, 0).await;
    let unknown = JoinTokenSecret::generate();
    let key = P256::generate();
    let sha512 = key.csr_signed_with(
        &digest::SHA512,
        &signature::ECDSA_P256_SHA512_ASN1,
        ECDSA_WITH_SHA512,
    );
    let sha1 = key.csr_signed_with(
        &digest::SHA1_FOR_LEGACY_USE_ONLY,
        &signature::ECDSA_P256_SHA1_ASN1,
        ECDSA_WITH_SHA1,
    );

    for (csr, oid) in [
        (&sha512, "1.2.840.10045.4.3.4"),
        (&sha1, "1.2.840.10045.4.1"),
    ] {
        // An unknown (but well-formed) token gets the same answer: the CSR
        // is checked first, and it is the caller's mistake either way.
        for token in [unknown.expose(), token.as_str()] {
            assert_status(
                attest(&broker, token, csr.clone(), "").await,
                Code::InvalidArgument,
                oid,
            );
        }
        let record = common::last_audit_record(&broker.data_dir());
        assert_eq!(record["outcome"], "refused", "{record}");
        assert!(record["reason"].as_str().unwrap().contains(oid), "{record}");
    }

    // Positive control: the same key and request signed with SHA-256 is
    // issued, with the token the refusals did not spend.
    let issued = attest(&broker, &token, key.csr_sha256(), "").await.unwrap();
    assert_eq!(
        issued.svid.unwrap().spiffe_id,
        format!("spiffe://{TRUST_DOMAIN}/csr")
    );

    // The refusals were logged, as refusals.
    let refusals: Vec<Line> = logged()
        .into_iter()
        .filter(|line| line.text.contains("1.2.840.10045.4.3.4"))
        .collect();
    assert!(!refusals.is_empty(), "the refusal is logged");
    assert!(
        refusals
            .iter()
            .all(|line| line.level == tracing::Level::INFO),
        "{refusals:?}"
    );
    assert_no_error_line();
}

// ---------------------------------------------------------------------------
// A join token asked for another identity

/// Refuses a join token asked for another entry's SPIFFE ID, without
/// spending it; then the right request (and an empty one) succeed.
async fn join_token_for_another_identity_is_refused_without_spending_it(broker: &TestBroker) {
    let mine = broker.create_entry("/node/a", &["db"]).await;
    let other = broker.create_entry("/node/b", &["db"]).await;
    let token = broker.join_token(&mine.id, 0).await;
    let key = P256::generate();

    let refused = attest(broker, &token, key.csr_sha256(), &other.spiffe_id).await;
    assert_status(
        refused,
        Code::InvalidArgument,
        &format!(
            "this join token is bound to {}, not {}",
            mine.spiffe_id, other.spiffe_id
        ),
    );
    let record = common::last_audit_record(&broker.data_dir());
    assert_eq!(record["outcome"], "refused", "{record}");
    assert_eq!(record["action"], "attest", "{record}");
    assert_eq!(record["entry_id"], mine.id, "{record}");
    assert_eq!(
        record["detail"]["requested_spiffe_id"], other.spiffe_id,
        "{record}"
    );

    // Not spent: the same token, asked for its own identity, is redeemed.
    let issued = attest(broker, &token, key.csr_sha256(), &mine.spiffe_id)
        .await
        .unwrap();
    assert_eq!(issued.svid.unwrap().spiffe_id, mine.spiffe_id);

    // Now it is spent, and that is what a replay is told, whatever it asks.
    assert_status(
        attest(broker, &token, key.csr_sha256(), &other.spiffe_id).await,
        Code::Unauthenticated,
        "already used",
    );
    // An empty spiffe_id keeps working.
    let fresh = broker.join_token(&other.id, 0).await;
    let issued = attest(broker, &fresh, key.csr_sha256(), "").await.unwrap();
    assert_eq!(issued.svid.unwrap().spiffe_id, other.spiffe_id);
    assert_no_error_line();
}

#[tokio::test]
async fn join_token_asked_for_another_identity_embedded_store() {
    logged();
    let broker = TestBroker::start().await;
    join_token_for_another_identity_is_refused_without_spending_it(&broker).await;
}

#[tokio::test]
async fn join_token_asked_for_another_identity_redis_store() {
    logged();
    let Some(url) = common::redis::redis_url_or_skip() else {
        return;
    };
    let guard = common::redis::PrefixGuard::new(&url, "error-codes");
    let prefix = guard.prefix.clone();
    let broker = TestBroker::start_configured(move |config| {
        config.store = mayfly::config::StoreLocation::Redis {
            url: url.clone(),
            prefix: prefix.clone(),
        };
    })
    .await;
    join_token_for_another_identity_is_refused_without_spending_it(&broker).await;
    drop(guard);
}
