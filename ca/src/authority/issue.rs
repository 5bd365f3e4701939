//! Issuing leaves: X509-SVIDs from CSRs, and server certificates with fresh keys.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use mayfly_sdk::SpiffeId;
use rcgen::{CertificateParams, PublicKeyData};
use zeroize::Zeroizing;

use super::CertificateAuthority;
use super::material::Intermediate;
use super::profiles::{self, CLOCK_SKEW_ALLOWANCE, Validity};
use crate::csr::{VerifiedCsr, parse_and_verify_csr};
use crate::error::CaError;
use crate::keys::SigningKey;

/// A request for an X509-SVID. Identity, names and lifetime come from the registration entry
/// and policy; the CSR contributes its public key and nothing else.
#[derive(Clone, Copy, Debug)]
pub struct X509SvidRequest<'a> {
    /// DER PKCS#10 CSR; its self-signature is verified.
    pub csr_der: &'a [u8],
    /// The SVID's identity, the only URI SAN. Must be in this CA's trust domain, with a path.
    pub spiffe_id: &'a SpiffeId,
    /// DNS SANs from the entry.
    pub dns_names: &'a [String],
    /// Requested lifetime; clamped to the intermediate's remaining lifetime.
    pub ttl: Duration,
    /// The current time.
    pub now: SystemTime,
}

/// An issued X509-SVID.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedX509Svid {
    /// The certified identity.
    pub spiffe_id: SpiffeId,
    /// DER certificates: the leaf, then the intermediate.
    pub cert_chain_der: Vec<Vec<u8>>,
    /// The leaf's serial number, lowercase hex (32 digits), for audit and revocation.
    pub serial_hex: String,
    /// The leaf's `notBefore` (backdated 30 s for clock skew).
    pub not_before: SystemTime,
    /// The leaf's `notAfter`.
    pub not_after: SystemTime,
    /// Whether `notAfter` was cut short to the intermediate's `notAfter`.
    pub clamped_to_signer: bool,
}

impl fmt::Debug for IssuedX509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedX509Svid")
            .field("spiffe_id", &self.spiffe_id.as_str())
            .field("serial_hex", &self.serial_hex)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("clamped_to_signer", &self.clamped_to_signer)
            .field("chain_len", &self.cert_chain_der.len())
            .finish()
    }
}

/// A server certificate and its freshly generated private key.
///
/// `Debug` redacts the key.
#[derive(Clone)]
pub struct ServerCertificate {
    /// DER certificates: the leaf, then the intermediate.
    pub cert_chain_der: Vec<Vec<u8>>,
    /// The P-256 private key, PKCS#8 DER; zeroized on drop.
    pub private_key_pkcs8_der: Zeroizing<Vec<u8>>,
    /// The leaf's `notAfter`.
    pub not_after: SystemTime,
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("chain_len", &self.cert_chain_der.len())
            .field("not_after", &self.not_after)
            .field("private_key_pkcs8_der", &"[redacted]")
            .finish()
    }
}

/// A leaf's validity and whether it was cut short.
struct LeafValidity {
    validity: Validity,
    clamped_to_signer: bool,
}

impl CertificateAuthority {
    /// Issues an X509-SVID for the public key of a CSR.
    ///
    /// The leaf names exactly `request.spiffe_id` (URI SAN) and `request.dns_names` (DNS SANs);
    /// it is not a CA, may only `digitalSignature`, and is good for `serverAuth` and
    /// `clientAuth`. Everything else in the CSR (subject, SANs, extension requests) is ignored.
    /// `notBefore` is `now - 30 s`; `notAfter` is `now + ttl`, clamped to the intermediate's
    /// `notAfter` (then `clamped_to_signer` is true).
    ///
    /// # Errors
    /// - [`CaError::ForeignTrustDomain`], [`CaError::SpiffeIdWithoutPath`],
    ///   [`CaError::InvalidDnsName`], [`CaError::InvalidTtl`] for a bad request;
    /// - the CSR errors of [`parse_and_verify_csr`];
    /// - [`CaError::SignerExpired`] if the intermediate has expired;
    /// - [`CaError::Crypto`] or [`CaError::Internal`] on our side.
    pub fn issue_x509_svid(
        &self,
        request: &X509SvidRequest<'_>,
    ) -> Result<IssuedX509Svid, CaError> {
        // The request's own checks come before the CSR's, as they always have.
        self.check_leaf_identity(request.spiffe_id)?;
        leaf_validity(&self.current.load().intermediate, request.ttl, request.now)?;
        let csr = parse_and_verify_csr(request.csr_der)?;
        self.issue_x509_svid_verified(&csr, request)
    }

    /// Like [`issue_x509_svid`](Self::issue_x509_svid), for a CSR the caller has already
    /// parsed and verified with [`parse_and_verify_csr`] (a broker checks the CSR before it
    /// spends a join token): `request.csr_der` is not read again, so its signature is not
    /// verified twice.
    ///
    /// # Errors
    /// As [`issue_x509_svid`](Self::issue_x509_svid), without the CSR errors.
    pub fn issue_x509_svid_verified(
        &self,
        csr: &VerifiedCsr,
        request: &X509SvidRequest<'_>,
    ) -> Result<IssuedX509Svid, CaError> {
        self.check_leaf_identity(request.spiffe_id)?;
        // One snapshot for the whole call: the chain names the intermediate that signed.
        let snapshot = self.current.load();
        let intermediate = &snapshot.intermediate;
        let leaf_validity = leaf_validity(intermediate, request.ttl, request.now)?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&csr.subject_public_key_info_der)
            .map_err(|e| CaError::CsrUnsupportedKey {
                algorithm: "SubjectPublicKeyInfo".to_string(),
                reason: e.to_string(),
            })?;
        let (serial, serial_hex) = profiles::random_serial()?;
        let params = profiles::leaf(
            request.spiffe_id,
            request.dns_names,
            &[],
            leaf_validity.validity,
            serial,
        )?;
        let leaf_der = sign_leaf(intermediate, &params, &public_key)?;
        ensure_certified_key(&leaf_der, &csr.subject_public_key_info_der)?;
        Ok(IssuedX509Svid {
            spiffe_id: request.spiffe_id.clone(),
            cert_chain_der: vec![leaf_der, intermediate.der.clone()],
            serial_hex,
            not_before: profiles::system_time(leaf_validity.validity.not_before),
            not_after: profiles::system_time(leaf_validity.validity.not_after),
            clamped_to_signer: leaf_validity.clamped_to_signer,
        })
    }

    /// Issues a TLS server certificate for the broker itself, with a new P-256 key.
    ///
    /// Same profile as an X509-SVID (one URI SAN, `digitalSignature`, `serverAuth` and
    /// `clientAuth`), plus `dns_names` and `ip_addresses` as SANs.
    ///
    /// # Errors
    /// As [`issue_x509_svid`](Self::issue_x509_svid), without the CSR errors.
    pub fn issue_server_certificate(
        &self,
        spiffe_id: &SpiffeId,
        dns_names: &[String],
        ip_addresses: &[IpAddr],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<ServerCertificate, CaError> {
        self.check_leaf_identity(spiffe_id)?;
        let snapshot = self.current.load();
        let intermediate = &snapshot.intermediate;
        let leaf_validity = leaf_validity(intermediate, ttl, now)?;
        let key = SigningKey::generate()?;
        let (serial, _) = profiles::random_serial()?;
        let params = profiles::leaf(
            spiffe_id,
            dns_names,
            ip_addresses,
            leaf_validity.validity,
            serial,
        )?;
        let leaf_der = sign_leaf(intermediate, &params, &key)?;
        Ok(ServerCertificate {
            cert_chain_der: vec![leaf_der, intermediate.der.clone()],
            private_key_pkcs8_der: Zeroizing::new(key.pkcs8_der().to_vec()),
            not_after: profiles::system_time(leaf_validity.validity.not_after),
        })
    }

    fn check_leaf_identity(&self, spiffe_id: &SpiffeId) -> Result<(), CaError> {
        if spiffe_id.trust_domain().as_str() != self.trust_domain.as_str() {
            return Err(CaError::ForeignTrustDomain {
                spiffe_id: spiffe_id.as_str().to_string(),
                trust_domain: self.trust_domain.as_str().to_string(),
            });
        }
        // X509-SVID §3.1: leaf SPIFFE IDs have a non-root path.
        if spiffe_id.path().is_empty() || spiffe_id.path() == "/" {
            return Err(CaError::SpiffeIdWithoutPath {
                spiffe_id: spiffe_id.as_str().to_string(),
            });
        }
        Ok(())
    }
}

fn leaf_validity(
    intermediate: &Intermediate,
    ttl: Duration,
    now: SystemTime,
) -> Result<LeafValidity, CaError> {
    if ttl.as_secs() == 0 {
        return Err(CaError::InvalidTtl { ttl });
    }
    let now = profiles::unix_seconds(now)?;
    let signer_not_after = intermediate.not_after;
    if signer_not_after <= now {
        return Err(CaError::SignerExpired {
            not_after: profiles::system_time(signer_not_after),
        });
    }
    let requested_not_after = profiles::add_seconds(now, ttl);
    let clamped_to_signer = requested_not_after > signer_not_after;
    Ok(LeafValidity {
        validity: Validity {
            // Never before the signer's own start: a chain valid as a whole.
            not_before: (now - CLOCK_SKEW_ALLOWANCE).max(intermediate.not_before),
            not_after: requested_not_after.min(signer_not_after),
        },
        clamped_to_signer,
    })
}

fn sign_leaf(
    intermediate: &Intermediate,
    params: &CertificateParams,
    public_key: &impl PublicKeyData,
) -> Result<Vec<u8>, CaError> {
    let certificate = params
        .signed_by(public_key, &intermediate.issuer)
        .map_err(|e| CaError::internal("signing a leaf certificate", e))?;
    Ok(certificate.der().to_vec())
}

/// rcgen re-encodes the key from its algorithm and bit string; make sure the result is the
/// CSR's key byte for byte, so no encoding quirk ever certifies something else.
fn ensure_certified_key(leaf_der: &[u8], expected_spki: &[u8]) -> Result<(), CaError> {
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| CaError::internal("re-reading an issued leaf", e))?;
    if leaf.public_key().raw != expected_spki {
        return Err(CaError::internal(
            "re-reading an issued leaf",
            "the certified key differs from the CSR's",
        ));
    }
    Ok(())
}
