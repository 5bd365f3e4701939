//! `x509pop`: proof of possession of a device or host certificate.
//!
//! A device holds a certificate issued by a CA the operator trusts
//! (`ca_bundle`) and that certificate's private key, which never leaves the
//! device. To attest, it asks the broker for a [`Challenge`], signs
//! [`X509PopAttestor::signed_message`] of the challenge's nonce with its key
//! ([`sign_challenge`]) and sends the signature with its certificate chain.
//! [`X509PopAttestor::verify`] validates the chain to a configured CA with
//! rustls-webpki (RFC 5280 path validation, client-authentication usage),
//! then the signature with the leaf's key, and yields selectors read from the
//! leaf.
//!
//! A certificate is public, so the chain alone proves nothing; the signature
//! over a fresh nonce proves the key is present. Each nonce is answered at
//! most once: the broker stores the challenge and takes it out when it is
//! answered ([`Attestors`](super::Attestors)), so a captured answer cannot be
//! replayed.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use mayfly::attest::x509pop::{X509PopAttestor, sign_challenge};
//!
//! // A device CA and a device certificate (made with rcgen here).
//! let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
//! let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
//! ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
//! let device_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
//! let device = rcgen::CertificateParams::new(vec!["dev-42.example.org".to_owned()])?
//!     .signed_by(&device_key, &ca)?;
//!
//! // The broker: trusts the CA, hands out a challenge.
//! let attestor = X509PopAttestor::from_ca_pem(ca.pem().as_bytes(), Duration::from_secs(30))?;
//! let now = SystemTime::now();
//! let challenge = attestor.new_challenge(mayfly::clock::unix_seconds(now));
//! // The device: signs the nonce.
//! let signature = sign_challenge(device_key.serialize_pem().as_bytes(), &challenge.nonce)?;
//! // The broker: verifies the chain and the signature.
//! let chain = vec![device.der().to_vec()];
//! let attestation = attestor.verify(&chain, &challenge.nonce, &signature, now)?;
//! assert!(attestation.selectors.iter().any(|s| s.as_str() == "x509pop:san:dns:dev-42.example.org"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use serde::{Deserialize, Deserializer};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use super::{AttestError, Attestation, AttestorConfigError, selector, sha256_hex, truncated};
use crate::clock::rfc3339;
use crate::policy::Selector;

mod error;
pub use error::{CaBundleError, CertificateError};

/// How long a challenge may be answered when the config does not say.
pub const DEFAULT_CHALLENGE_TTL: Duration = Duration::from_secs(30);
/// The longest `challenge_ttl` accepted: a nonce is meant to be answered at
/// once, and every outstanding one is state the broker keeps.
pub const MAX_CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// Expiry is kept in whole seconds, so a shorter TTL would round to nothing.
const MIN_CHALLENGE_TTL: Duration = Duration::from_secs(1);

/// Prepended to the nonce before signing, so that a signature the device key
/// made for anything else (a TLS handshake, a CSR, another protocol's
/// challenge) can never pass as an answer here. The version lets a future
/// format be told apart; the NUL ends the label.
pub use mayfly_sdk::client::x509pop::{X509PopKeyError, sign_challenge};

const NONCE_BYTES: usize = 32;
const CHALLENGE_ID_BYTES: usize = 16;

/// Limits checked before any parsing, so hostile evidence costs little.
const MAX_CHAIN_CERTIFICATES: usize = 8;
const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;
/// An RSA-8192 signature; every accepted algorithm's signatures fit.
const MAX_SIGNATURE_BYTES: usize = 1024;

/// The algorithms accepted for certificate signatures in the chain and for
/// the proof itself: ECDSA P-256/P-384 (ASN.1 DER signatures) with SHA-256/384,
/// Ed25519, RSA 2048–8192 bits PKCS#1 v1.5 and PSS with SHA-256/384/512.
static SIGNATURE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ED25519,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// `[attestors.x509pop]` in the server config.
///
/// ```toml
/// [attestors.x509pop]
/// ca_bundle = "/etc/mayfly/device-ca.pem"
/// challenge_ttl = "30s"
/// environments = ["prod"]   # optional pin; unset: any
/// ```
///
/// `environments` pins the environments devices of this CA bundle may be
/// given: an entry matched with another is refused at attestation (audited).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509PopConfig {
    /// A PEM file with one or more CA certificates (basicConstraints
    /// `CA:TRUE`): the CAs that issue device certificates. A device's chain
    /// must verify to one of them.
    pub ca_bundle: PathBuf,
    /// How long a challenge may be answered, as a duration (`"30s"`);
    /// default 30 s, at most 5 min.
    #[serde(default, deserialize_with = "deserialize_duration")]
    pub challenge_ttl: Option<Duration>,
    /// The only environments an entry attested through this CA bundle may
    /// have, e.g. `["staging", "test"]`; unset: no pin. Checked at
    /// attestation, refusing (and auditing) any other entry.
    #[serde(default)]
    pub environments: Option<Vec<String>>,
}

/// Reads a humantime duration (`"30s"`, `"2m"`); only called when the field
/// is present, `#[serde(default)]` covers its absence.
fn deserialize_duration<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {:?}: {e} (expected e.g. \"30s\")",
            truncated(&text)
        ))
    })
}

/// A challenge for one device: answer it by signing
/// [`X509PopAttestor::signed_message`]`(nonce)` before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Names the challenge when it is answered: 16 random bytes, lowercase hex.
    pub id: String,
    /// 32 random bytes to sign. Not secret: the signature, not the nonce,
    /// proves possession of the key.
    pub nonce: Vec<u8>,
    /// Unix seconds after which the challenge may no longer be answered.
    pub expires_at: i64,
}

/// Verifies x509pop evidence against the configured device CAs.
pub struct X509PopAttestor {
    /// The configured CAs as webpki trust anchors, in bundle order.
    anchors: Vec<TrustAnchor<'static>>,
    /// Hex SHA-256 of each configured CA certificate's DER, same order as
    /// `anchors`: what the `x509pop:ca:` selector names.
    anchor_sha256: Vec<String>,
    challenge_ttl: Duration,
}

impl fmt::Debug for X509PopAttestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509PopAttestor")
            .field("ca_sha256", &self.anchor_sha256)
            .field("challenge_ttl", &self.challenge_ttl)
            .finish()
    }
}

impl X509PopAttestor {
    /// Reads and parses the CA bundle the config names.
    ///
    /// # Errors
    ///
    /// [`AttestorConfigError::ChallengeTtl`] when `challenge_ttl` is outside
    /// 1 s..=5 min; [`AttestorConfigError::ReadCaBundle`] when the bundle
    /// cannot be read; [`AttestorConfigError::CaBundle`] when it is not
    /// PEM, holds something other than CA certificates, or holds none.
    /// Messages name the file or the setting.
    pub fn new(config: &X509PopConfig) -> Result<Self, AttestorConfigError> {
        let challenge_ttl = config.challenge_ttl.unwrap_or(DEFAULT_CHALLENGE_TTL);
        check_challenge_ttl(challenge_ttl)?;
        let path = &config.ca_bundle;
        let pem = std::fs::read(path).map_err(|source| AttestorConfigError::ReadCaBundle {
            path: path.clone(),
            source,
        })?;
        let cas = parse_ca_bundle(&pem).map_err(|source| AttestorConfigError::CaBundle {
            path: Some(path.clone()),
            source,
        })?;
        Ok(Self::from_parts(cas, challenge_ttl))
    }

    /// Builds the attestor from PEM CA certificates already in memory.
    ///
    /// # Errors
    ///
    /// As [`X509PopAttestor::new`], without the file name (a
    /// [`AttestorConfigError::CaBundle`] has no `path`).
    pub fn from_ca_pem(
        ca_pem: &[u8],
        challenge_ttl: Duration,
    ) -> Result<Self, AttestorConfigError> {
        check_challenge_ttl(challenge_ttl)?;
        let cas = parse_ca_bundle(ca_pem)
            .map_err(|source| AttestorConfigError::CaBundle { path: None, source })?;
        Ok(Self::from_parts(cas, challenge_ttl))
    }

    fn from_parts(cas: Vec<(TrustAnchor<'static>, String)>, challenge_ttl: Duration) -> Self {
        let (anchors, anchor_sha256) = cas.into_iter().unzip();
        X509PopAttestor {
            anchors,
            anchor_sha256,
            challenge_ttl,
        }
    }

    /// How long a challenge may be answered.
    pub fn challenge_ttl(&self) -> Duration {
        self.challenge_ttl
    }

    /// A fresh challenge expiring `challenge_ttl` after `now` (unix seconds).
    /// Storing it for a single use is the caller's job.
    pub fn new_challenge(&self, now: i64) -> Challenge {
        let id: [u8; CHALLENGE_ID_BYTES] = random_bytes();
        let nonce: [u8; NONCE_BYTES] = random_bytes();
        // Bounded by MAX_CHALLENGE_TTL, so the conversion cannot fail.
        let ttl = i64::try_from(self.challenge_ttl.as_secs()).unwrap_or(i64::MAX);
        Challenge {
            id: hex::encode(id),
            nonce: nonce.to_vec(),
            expires_at: now.saturating_add(ttl),
        }
    }

    /// The exact bytes the client signs: a domain-separation label, then the
    /// nonce (`"mayfly x509pop v1\0" || nonce`), so a signature made for
    /// anything else cannot be replayed here.
    pub fn signed_message(nonce: &[u8]) -> Vec<u8> {
        mayfly_sdk::client::x509pop::signed_message(nonce)
    }

    /// Verifies `chain_der` (leaf first, DER; at most 8 certificates of at
    /// most 16 KiB each) to a configured CA at `now` for client
    /// authentication (a leaf without an extended key usage is accepted),
    /// then `signature` over [`signed_message`](Self::signed_message)`(nonce)`
    /// with the leaf's key (ECDSA P-256/P-384 with ASN.1 DER signatures,
    /// Ed25519, RSA PKCS#1 v1.5 or PSS), and yields the leaf's selectors,
    /// sorted and deduplicated:
    ///
    /// - `x509pop:subject:cn:<common name>`, when the subject has exactly one;
    /// - `x509pop:san:dns:<name>` (lowercased) and `x509pop:san:uri:<uri>`
    ///   for each DNS and URI subject alternative name;
    /// - `x509pop:ca:<hex SHA-256 of the configured CA certificate the chain
    ///   verified to>`;
    /// - `x509pop:serial:<lowercase hex serial>`.
    ///
    /// A name that cannot be a selector (a space, too long) is left out:
    /// no entry can name it. The audit subject is `x509pop:cn=<common name>`,
    /// or `x509pop:serial=<hex>` without one.
    ///
    /// # Errors
    ///
    /// - [`AttestError::Malformed`]: an empty or oversized chain or
    ///   signature, a certificate that is not strict DER X.509, or a leaf
    ///   key type that is not supported.
    /// - [`AttestError::BadChallenge`]: `nonce` is not 32 bytes (it did not
    ///   come from [`new_challenge`](Self::new_challenge)).
    /// - [`AttestError::UntrustedCertificate`]: path validation failed
    ///   (expired, unknown issuer, not for client authentication, ...), or
    ///   the leaf's key usage leaves out digitalSignature.
    /// - [`AttestError::BadProofSignature`]: the signature does not verify
    ///   with the leaf's key over this nonce.
    pub fn verify(
        &self,
        chain_der: &[Vec<u8>],
        nonce: &[u8],
        signature: &[u8],
        now: SystemTime,
    ) -> Result<Attestation, AttestError> {
        check_evidence_size(chain_der, signature)?;
        if nonce.len() != NONCE_BYTES {
            return Err(AttestError::BadChallenge {
                reason: format!("has a {}-byte nonce, not {NONCE_BYTES}", nonce.len()),
            });
        }
        let certificates: Vec<CertificateDer<'_>> = chain_der
            .iter()
            .map(|der| CertificateDer::from(der.as_slice()))
            .collect();
        let Some((leaf_der, intermediates)) = certificates.split_first() else {
            return Err(malformed("the certificate chain is empty"));
        };
        // Every certificate is parsed up front, so garbage is reported as
        // malformed rather than as an untrusted chain.
        let leaf_fields = parse_leaf(leaf_der)?;
        let leaf = EndEntityCert::try_from(leaf_der)
            .map_err(|e| malformed(format!("certificate 1 (the leaf): {}", der_error(&e))))?;
        for (index, der) in certificates.iter().enumerate().skip(1) {
            EndEntityCert::try_from(der)
                .map_err(|e| malformed(format!("certificate {}: {}", index + 1, der_error(&e))))?;
        }

        let path = leaf
            .verify_for_usage(
                SIGNATURE_ALGORITHMS,
                &self.anchors,
                intermediates,
                unix_time(now),
                KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|e| chain_error(&e, &leaf_fields))?;
        let ca_sha256 = self.configured_ca_sha256(path.anchor())?;
        check_signing_key_usage(&leaf_fields)?;
        verify_proof(&leaf, nonce, signature)?;

        let (subject, selectors) = leaf_identity(&leaf_fields, ca_sha256)?;
        Ok(Attestation {
            attestor: "x509pop",
            subject,
            selectors,
            evidence_sha256: evidence_sha256(chain_der, signature),
            // The nonce's single use is enforced by the broker's challenge store.
            replay: None,
        })
    }

    /// Maps the trust anchor webpki verified to back to the configured CA.
    /// webpki returns a reference into `self.anchors`, so identity is exact.
    fn configured_ca_sha256(&self, anchor: &TrustAnchor<'_>) -> Result<&str, AttestError> {
        self.anchors
            .iter()
            .position(|configured| std::ptr::eq(configured, anchor))
            .and_then(|index| self.anchor_sha256.get(index))
            .map(String::as_str)
            // Unreachable unless webpki changes how it reports the anchor;
            // refusing is the safe answer then.
            .ok_or_else(|| AttestError::UntrustedCertificate {
                reason: "the chain verified to a trust anchor that is not configured".into(),
            })
    }
}

fn check_challenge_ttl(ttl: Duration) -> Result<(), AttestorConfigError> {
    if (MIN_CHALLENGE_TTL..=MAX_CHALLENGE_TTL).contains(&ttl) {
        Ok(())
    } else {
        Err(AttestorConfigError::ChallengeTtl {
            ttl,
            min: MIN_CHALLENGE_TTL,
            max: MAX_CHALLENGE_TTL,
        })
    }
}

/// Parses a CA bundle: only `CERTIFICATE` sections, each a CA certificate.
/// Returns each CA as a trust anchor with the hex SHA-256 of its DER;
/// duplicates are dropped.
fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<(TrustAnchor<'static>, String)>, CaBundleError> {
    let mut cas: Vec<(TrustAnchor<'static>, String)> = Vec::new();
    for (index, section) in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem).enumerate() {
        let (kind, der) = section.map_err(|e| CaBundleError::NotPem {
            source: Box::new(e),
        })?;
        // A private key pasted into the bundle must not linger in memory.
        let der = Zeroizing::new(der);
        let number = index + 1;
        if kind != SectionKind::Certificate {
            // Anything else (above all a private key) means the wrong file
            // was given; refusing beats silently skipping it.
            return Err(CaBundleError::NotCertificate {
                section: number,
                kind: format!("{kind:?}"),
            });
        }
        let sha256 = sha256_hex(&der);
        if cas.iter().any(|(_, known)| *known == sha256) {
            continue;
        }
        let refused = |source| CaBundleError::Certificate { number, source };
        check_ca_certificate(&der).map_err(refused)?;
        let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
            .map_err(|e| {
                refused(CertificateError::Unusable {
                    reason: der_error(&e),
                })
            })?
            .to_owned();
        cas.push((anchor, sha256));
    }
    if cas.is_empty() {
        return Err(CaBundleError::NoCertificate);
    }
    Ok(cas)
}

/// A trust anchor must be a CA: a leaf in the bundle is a configuration
/// mistake webpki would not catch (it would trust anything that leaf signed).
fn check_ca_certificate(der: &[u8]) -> Result<(), CertificateError> {
    let certificate = parse_x509(der)?;
    match certificate.basic_constraints() {
        Ok(Some(constraints)) if constraints.value.ca => Ok(()),
        Ok(_) => Err(CertificateError::NotCa {
            subject: certificate.subject().to_string(),
        }),
        Err(e) => Err(CertificateError::BadBasicConstraints {
            source: Box::new(e),
        }),
    }
}

/// Strict DER X.509: no trailing bytes.
fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, CertificateError> {
    let (rest, certificate) =
        X509Certificate::from_der(der).map_err(|e| CertificateError::NotDer {
            source: Box::new(e),
        })?;
    if !rest.is_empty() {
        return Err(CertificateError::TrailingData { bytes: rest.len() });
    }
    Ok(certificate)
}

fn parse_leaf<'a>(der: &'a CertificateDer<'a>) -> Result<X509Certificate<'a>, AttestError> {
    parse_x509(der).map_err(|e| malformed(format!("certificate 1 (the leaf): {e}")))
}

fn check_evidence_size(chain_der: &[Vec<u8>], signature: &[u8]) -> Result<(), AttestError> {
    if chain_der.is_empty() {
        return Err(malformed("the certificate chain is empty"));
    }
    if chain_der.len() > MAX_CHAIN_CERTIFICATES {
        return Err(malformed(format!(
            "the certificate chain has {} certificates; at most {MAX_CHAIN_CERTIFICATES} are accepted",
            chain_der.len()
        )));
    }
    if let Some(index) = chain_der
        .iter()
        .position(|der| der.len() > MAX_CERTIFICATE_BYTES)
    {
        return Err(malformed(format!(
            "certificate {} is larger than {MAX_CERTIFICATE_BYTES} bytes",
            index + 1
        )));
    }
    if signature.is_empty() || signature.len() > MAX_SIGNATURE_BYTES {
        return Err(malformed(format!(
            "the signature is {} bytes; expected 1 to {MAX_SIGNATURE_BYTES}",
            signature.len()
        )));
    }
    Ok(())
}

/// The proof is a signature, so a leaf whose key usage extension leaves out
/// digitalSignature (RFC 5280 4.2.1.3) is refused; webpki checks the extended
/// key usage but not this bit. A leaf without the extension may sign.
fn check_signing_key_usage(leaf: &X509Certificate<'_>) -> Result<(), AttestError> {
    match leaf.key_usage() {
        Ok(None) => Ok(()),
        Ok(Some(usage)) if usage.value.digital_signature() => Ok(()),
        Ok(Some(_)) => Err(AttestError::UntrustedCertificate {
            reason: "the device certificate's key usage does not allow digital signatures".into(),
        }),
        Err(e) => Err(malformed(format!("leaf keyUsage: {e}"))),
    }
}

/// Checks the proof with every accepted algorithm that fits the leaf's key:
/// webpki refuses a mismatched algorithm before any cryptography, so only
/// the candidates for this key type cost a verification.
fn verify_proof(
    leaf: &EndEntityCert<'_>,
    nonce: &[u8],
    signature: &[u8],
) -> Result<(), AttestError> {
    let message = X509PopAttestor::signed_message(nonce);
    let mut key_supported = false;
    for algorithm in SIGNATURE_ALGORITHMS {
        match leaf.verify_signature(*algorithm, &message, signature) {
            Ok(()) => return Ok(()),
            // The algorithm fits the key; the signature does not verify with it.
            Err(webpki::Error::InvalidSignatureForPublicKey) => key_supported = true,
            // The algorithm is for another key type: try the next one.
            Err(_) => {}
        }
    }
    if key_supported {
        Err(AttestError::BadProofSignature)
    } else {
        Err(malformed(
            "the leaf certificate's key type is not supported (P-256, P-384, Ed25519 or RSA \
             2048-8192 bits)",
        ))
    }
}

/// The audit subject and the sorted, deduplicated selectors of a verified leaf.
///
/// A name that cannot be a selector (a space or a control character, too
/// long, a common name that is not a text string) is left out rather than
/// refused: no entry can name such a value, so leaving it out never lets a
/// device match an entry it should not, while refusing would lock a device
/// out over a name nobody asked about. Malformed encodings are still refused.
fn leaf_identity(
    leaf: &X509Certificate<'_>,
    ca_sha256: &str,
) -> Result<(String, Vec<Selector>), AttestError> {
    let serial = serial_hex(leaf.raw_serial());
    // Hex digits only: these are always valid selectors.
    let mut selectors = vec![
        selector("x509pop:ca:", "issuing CA", ca_sha256)?,
        selector("x509pop:serial:", "serial number", &serial)?,
    ];
    // Only a common name that became a selector names the device in the audit log.
    let common_name = common_name(leaf).filter(|common_name| {
        push_representable(
            &mut selectors,
            "x509pop:subject:cn:",
            "subject common name",
            common_name,
        )
    });
    let alternative_names = leaf
        .subject_alternative_name()
        .map_err(|e| malformed(format!("leaf subjectAltName: {e}")))?;
    for name in alternative_names
        .iter()
        .flat_map(|san| &san.value.general_names)
    {
        match name {
            // DNS names are case-insensitive; one spelling keeps selectors comparable.
            GeneralName::DNSName(dns) => {
                push_representable(
                    &mut selectors,
                    "x509pop:san:dns:",
                    "DNS subject alternative name",
                    &dns.to_ascii_lowercase(),
                );
            }
            GeneralName::URI(uri) => {
                push_representable(
                    &mut selectors,
                    "x509pop:san:uri:",
                    "URI subject alternative name",
                    uri,
                );
            }
            // x509-parser's word for a name whose encoding is wrong (a DNS
            // name that is not IA5): a broken certificate, refused.
            GeneralName::Invalid(..) => {
                return Err(malformed("leaf subjectAltName holds a malformed name"));
            }
            _ => {}
        }
    }
    selectors.sort();
    selectors.dedup();
    let subject = match common_name {
        Some(common_name) => format!("x509pop:cn={common_name}"),
        // "cn=" followed by a serial would read as a common name.
        None => format!("x509pop:serial={serial}"),
    };
    Ok((subject, selectors))
}

/// Pushes `prefix + value` if it is a valid selector; says whether it did.
fn push_representable(
    selectors: &mut Vec<Selector>,
    prefix: &str,
    name: &str,
    value: &str,
) -> bool {
    match selector(prefix, name, value) {
        Ok(selector) => {
            selectors.push(selector);
            true
        }
        Err(_) => {
            // The value itself stays out of the log: it can hold anything.
            tracing::debug!(
                name,
                "x509pop: a certificate name cannot be a selector; left out"
            );
            false
        }
    }
}

/// The leaf's one subject common name as text. None when there is none,
/// when there are several (which one an entry meant would be ambiguous), or
/// when it is not a text string x509-parser reads (BMPString, ...).
fn common_name<'a>(leaf: &'a X509Certificate<'_>) -> Option<&'a str> {
    let mut names = leaf.subject().iter_common_name();
    let first = names.next()?;
    if names.next().is_some() {
        tracing::debug!("x509pop: the leaf has several common names; none is used");
        return None;
    }
    first.as_str().ok()
}

/// Lowercase hex of the serial's magnitude: the DER sign-padding zero is
/// dropped, so the form matches `openssl x509 -serial` (lowercased) and the
/// serials Mayfly issues.
fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

/// Hex SHA-256 over the chain DERs in order, then the signature; the same
/// hash the mint path records for refused evidence.
fn evidence_sha256(chain_der: &[Vec<u8>], signature: &[u8]) -> String {
    let mut evidence =
        Vec::with_capacity(chain_der.iter().map(Vec::len).sum::<usize>() + signature.len());
    for der in chain_der {
        evidence.extend_from_slice(der);
    }
    evidence.extend_from_slice(signature);
    sha256_hex(&evidence)
}

/// webpki's reason, readable; for expiry, which certificate and when.
fn chain_error(error: &webpki::Error, leaf: &X509Certificate<'_>) -> AttestError {
    use webpki::Error as E;
    let reason = match error {
        E::CertExpired { time, not_after } => {
            let whose = if leaf.validity().not_after.timestamp() == unix(*not_after) {
                "the device certificate"
            } else {
                "a CA certificate in the chain"
            };
            format!(
                "certificate expired: {whose} was valid until {} (now {})",
                rfc3339(unix(*not_after)),
                rfc3339(unix(*time))
            )
        }
        E::CertNotValidYet { time, not_before } => format!(
            "certificate not yet valid: valid from {} (now {})",
            rfc3339(unix(*not_before)),
            rfc3339(unix(*time))
        ),
        E::UnknownIssuer => "issuer not trusted: the chain does not lead to a configured CA".into(),
        E::InvalidSignatureForPublicKey => {
            "a certificate's signature does not verify with its issuer's key".into()
        }
        E::CaUsedAsEndEntity => "the leaf is a CA certificate, not a device certificate".into(),
        E::EndEntityUsedAsCa => "a certificate that is not a CA issued another".into(),
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
            "the device certificate's extended key usage does not allow client authentication"
                .into()
        }
        E::PathLenConstraintViolated => "the chain violates a CA's path length limit".into(),
        E::NameConstraintViolation => "the chain violates a CA's name constraints".into(),
        E::CertDistrusted => "a certificate in the chain is distrusted".into(),
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "a certificate is signed with an unsupported algorithm".into()
        }
        E::UnsupportedCriticalExtension => {
            "a certificate has an unsupported critical extension".into()
        }
        E::MaximumPathDepthExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumSignatureChecksExceeded
        | E::MaximumNameConstraintComparisonsExceeded => "the chain is too long or complex".into(),
        other => format!("certificate rejected ({other:?})"),
    };
    AttestError::UntrustedCertificate { reason }
}

/// webpki's parse errors, readable.
fn der_error(error: &webpki::Error) -> String {
    match error {
        webpki::Error::BadDer | webpki::Error::BadDerTime => "not a DER X.509 certificate".into(),
        webpki::Error::TrailingData(_) => "trailing data after the certificate".into(),
        webpki::Error::UnsupportedCertVersion => "not an X.509 v3 certificate".into(),
        other => format!("not a usable certificate ({other:?})"),
    }
}

fn malformed(reason: impl Into<String>) -> AttestError {
    AttestError::Malformed {
        reason: reason.into(),
    }
}

fn unix_time(now: SystemTime) -> UnixTime {
    // A clock before 1970 validates as at the epoch: every certificate is
    // then not yet valid, which fails closed.
    UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn unix(time: UnixTime) -> i64 {
    i64::try_from(time.as_secs()).unwrap_or(i64::MAX)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system RNG failing is not something the broker can run without
    // (as `EntryId::generate`).
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut bytes).expect("system random number generator failed");
    bytes
}

#[cfg(test)]
mod tests;
