//! Why a device CA bundle, or one certificate in it, is refused.

/// An error from x509-parser, kept as a source without its type leaking
/// into our public errors.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a CA bundle (`[attestors.x509pop] ca_bundle`) cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaBundleError {
    /// The file is not PEM.
    #[error("not valid PEM: {source}")]
    NotPem {
        /// The PEM reader's error.
        #[source]
        source: BoxError,
    },
    /// A PEM section is not a certificate (above all, a private key): the
    /// wrong file was given.
    #[error(
        "PEM section {section} is {kind}, not CERTIFICATE; a CA bundle holds only CA certificates"
    )]
    NotCertificate {
        /// The section's position, from 1.
        section: usize,
        /// What it is (`PrivateKey`, `Crl`, ...).
        kind: String,
    },
    /// A certificate in the bundle is refused.
    #[error("certificate {number}: {source}")]
    Certificate {
        /// The certificate's position among the PEM sections, from 1.
        number: usize,
        /// Why.
        #[source]
        source: CertificateError,
    },
    /// The bundle holds no certificate at all.
    #[error("holds no CERTIFICATE; expected PEM with one or more CA certificates")]
    NoCertificate,
}

/// Why a certificate (a CA in the bundle, or a device's leaf) is refused
/// before any path validation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Not a DER X.509 certificate.
    #[error("not a DER X.509 certificate: {source}")]
    NotDer {
        /// The X.509 parser's error.
        #[source]
        source: BoxError,
    },
    /// Bytes after the certificate's DER.
    #[error("{bytes} bytes of trailing data after the certificate")]
    TrailingData {
        /// How many.
        bytes: usize,
    },
    /// A certificate in the CA bundle that is not a CA: trusting it would
    /// trust anything it signed, which webpki would not catch.
    #[error("{subject} is not a CA certificate (no basicConstraints CA:TRUE)")]
    NotCa {
        /// Its subject.
        subject: String,
    },
    /// The basicConstraints extension cannot be read.
    #[error("malformed basicConstraints: {source}")]
    BadBasicConstraints {
        /// The X.509 parser's error.
        #[source]
        source: BoxError,
    },
    /// webpki cannot use the certificate (as a trust anchor).
    #[error("{reason}")]
    Unusable {
        /// webpki's reason, readable.
        reason: String,
    },
}
