//! # mayfly-ca
//!
//! Mayfly's certificate authority: a root, an intermediate that signs every leaf, and an
//! ES256 JWT signing key, kept as files in one directory (keys `0600`, written atomically)
//! and parsed once at load.
//!
//! - [`CertificateAuthority::issue_x509_svid`] turns a CSR into an X509-SVID
//!   (`spiffe/spiffe` `standards/X509-SVID.md`): only the CSR's public key is used; the
//!   identity, names and lifetime come from the caller, and no leaf outlives its signer.
//! - [`JwtSigner::sign`] mints JWT-SVIDs with exactly one audience.
//! - [`CertificateAuthority::crl`] signs an X.509 CRL of revoked leaf serials.
//! - [`CertificateAuthority::bundle`] is the SPIFFE trust bundle relying parties verify with.
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
//! Rotation: call [`CertificateAuthority::load_or_create`] again (say, hourly); it replaces
//! the intermediate once less than a quarter of its lifetime is left, and the caller swaps
//! the new value in. The root key is held in memory only during that call.

#![forbid(unsafe_code)]

pub mod authority;
pub mod csr;
mod error;
pub mod files;
pub mod jwt;
pub mod keys;
mod pem;

pub use authority::{
    CaConfig, CertificateAuthority, IssuedX509Svid, LoadReport, RevokedSerial, ServerCertificate,
    X509SvidRequest,
};
pub use error::CaError;
pub use jwt::{JwtSigner, SignedJwt};
