//! # mayfly-ca
//!
//! Mayfly's certificate authority: roots, an intermediate that signs every leaf, and ES256
//! JWT signing keys, kept as files in one directory (keys `0600`, written atomically), parsed
//! once at load, and rotated without a restart.
//!
//! - [`CertificateAuthority::issue_x509_svid`] turns a CSR into an X509-SVID
//!   (`spiffe/spiffe` `standards/X509-SVID.md`): only the CSR's public key is used; the
//!   identity, names and lifetime come from the caller, and no leaf outlives its signer.
//! - [`JwtSigner::sign`] mints JWT-SVIDs with exactly one audience.
//! - [`CertificateAuthority::crl`] signs an X.509 CRL of revoked leaf serials.
//! - [`CertificateAuthority::bundle`] is the SPIFFE trust bundle relying parties verify with.
//!
//! Modules: [`authority`] (the CA: load, issue, rotate, CRL, status, the
//! rotation journal), [`csr`] (strict CSR parsing), [`jwt`] (JWT-SVID
//! signing), [`keys`] (signing keys), [`failpoint`] (crash tests); the error
//! type is [`CaError`].
//!
//! ## Quick start
//!
//! ```no_run
//! use std::time::{Duration, SystemTime};
//! use mayfly_ca::{CaConfig, CertificateAuthority, X509SvidRequest};
//! use mayfly_sdk::{SpiffeId, TrustDomain};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = CaConfig::new(TrustDomain::new("example.org")?);
//! let now = SystemTime::now();
//! let (ca, report) = CertificateAuthority::load_or_create("mayfly-data/ca".as_ref(), &config, now)?;
//! if report.created_root {
//!     println!("new root CA, sha256 {}", ca.root_fingerprint_sha256());
//! }
//!
//! # let csr_der: Vec<u8> = Vec::new();
//! let id = SpiffeId::parse("spiffe://example.org/billing/api")?;
//! let svid = ca.issue_x509_svid(&X509SvidRequest {
//!     csr_der: &csr_der,
//!     spiffe_id: &id,
//!     dns_names: &[],
//!     ttl: Duration::from_secs(600),
//!     now,
//! })?;
//! assert_eq!(svid.cert_chain_der.len(), 2); // leaf, intermediate
//! # Ok(())
//! # }
//! ```
//!
//! ## Rotation
//!
//! Every authority (roots, intermediates, JWT keys) is `Prepared` (published, not signing),
//! then `Active`, then `Old` (not signing, published while what it signed may be valid), then
//! `Retired`. A journal in the CA directory records it all and is the commit point of every
//! step, so a crash at any point loads consistently.
//!
//! - [`CertificateAuthority::rotate_due`], called periodically, rotates intermediates and
//!   JWT keys by itself: prepare at half life, activate after `publish_ahead`, retire once
//!   nothing they signed can be valid ([`CaConfig`]).
//! - Roots rotate when an operator says so: [`CertificateAuthority::prepare_root`],
//!   [`CertificateAuthority::activate_root`], [`CertificateAuthority::retire_root`]. A root
//!   whose key stays offline: [`create_root`], [`CertificateAuthority::prepare_root_from_certificate`],
//!   [`CertificateAuthority::intermediate_csr`], [`sign_intermediate_csr`],
//!   [`CertificateAuthority::import_intermediate`].
//! - Issuing always uses the active signers, read lock-free;
//!   [`CertificateAuthority::generation`] tells when the bundle or the signers changed.
//! - [`CertificateAuthority::status`] lists every authority and what needs attention.

#![forbid(unsafe_code)]

pub mod authority;
pub mod csr;
mod error;
pub mod failpoint;
pub mod jwt;
pub mod keys;

pub use authority::{
    AuthorityKind, AuthorityState, AuthorityStatus, CaConfig, CaStatus, CertificateAuthority,
    IssuedX509Svid, LoadReport, RevokedSerial, RotationEvent, ServerCertificate, X509SvidRequest,
    create_root, export_active_root, sign_intermediate_csr,
};
pub use error::{CaError, Fault};
pub use jwt::{JwtSigner, SignedJwt};
