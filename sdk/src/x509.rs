//! X.509 as SPIFFE uses it, read one way everywhere: the facts of an
//! X509-SVID leaf (its one SPIFFE ID, serial, validity) with the leaf checks
//! of X509-SVID.md §4, and concatenated DER certificates split apart. The
//! broker reads its mTLS callers with it, the agent the SVIDs it holds, and
//! the workload sources what the agent hands them.

use x509_parser::extensions::GeneralName;

use crate::SpiffeId;
use crate::spiffe_id::SpiffeIdError;

/// What the SPIFFE profile and the revocation check need from a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFacts {
    /// The SPIFFE ID of its one URI SAN.
    pub spiffe_id: SpiffeId,
    /// The serial number in the revocation set's canonical hex
    /// ([`serial_from_bytes`](crate::revocation::serial_from_bytes)).
    pub serial: String,
    /// `notBefore`, Unix seconds.
    pub not_before: i64,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// Why a certificate is not an X509-SVID leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeafError {
    /// The bytes are not a DER X.509 certificate.
    #[error("not a DER X.509 certificate")]
    NotACertificate,
    /// The subjectAltName extension does not parse.
    #[error("malformed subjectAltName")]
    MalformedSan,
    /// There is no subjectAltName, so no SPIFFE ID.
    #[error("no subjectAltName, so no SPIFFE ID")]
    NoSan,
    /// Not exactly one URI SAN.
    #[error("an X509-SVID has exactly one URI SAN; this one has {found}")]
    UriSanCount {
        /// How many it has.
        found: usize,
    },
    /// The URI SAN is not a SPIFFE ID.
    #[error("URI SAN {uri:?}: {reason}")]
    NotASpiffeId {
        /// The URI, as found.
        uri: String,
        /// Why it is not one.
        reason: SpiffeIdError,
    },
    /// A CA certificate, not a leaf.
    #[error("it is a CA certificate, not a leaf")]
    CaCertificate,
    /// A leaf with `keyCertSign` or `cRLSign`.
    #[error("a leaf must not have keyCertSign or cRLSign")]
    SigningKeyUsage,
}

/// Reads a leaf's facts and checks it is a leaf by X509-SVID.md §4:
/// exactly one URI SAN, a valid SPIFFE ID; not a CA; no `keyCertSign` or
/// `cRLSign`.
///
/// # Errors
/// [`LeafError`], naming the first check that failed.
pub fn inspect_leaf(der: &[u8]) -> Result<LeafFacts, LeafError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| LeafError::NotACertificate)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| LeafError::MalformedSan)?
        .ok_or(LeafError::NoSan)?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return Err(LeafError::UriSanCount { found: uris.len() });
    };
    let spiffe_id = SpiffeId::parse(uri).map_err(|reason| LeafError::NotASpiffeId {
        uri: uri.chars().take(256).collect(),
        reason,
    })?;
    if let Ok(Some(constraints)) = cert.basic_constraints()
        && constraints.value.ca
    {
        return Err(LeafError::CaCertificate);
    }
    if let Ok(Some(usage)) = cert.key_usage()
        && (usage.value.key_cert_sign() || usage.value.crl_sign())
    {
        return Err(LeafError::SigningKeyUsage);
    }
    Ok(LeafFacts {
        spiffe_id,
        serial: crate::revocation::serial_from_bytes(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Why concatenated certificates do not split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate {index} is not a DER X.509 certificate")]
pub struct SplitError {
    /// Which one, counting from 0.
    pub index: usize,
}

/// Splits concatenated DER certificates (the Workload API's wire form of
/// chains and bundles).
///
/// # Errors
/// [`SplitError`] naming the first certificate that does not parse.
pub fn split_certificates(mut concatenated: &[u8]) -> Result<Vec<Vec<u8>>, SplitError> {
    let mut certificates = Vec::new();
    while !concatenated.is_empty() {
        let (rest, _) =
            x509_parser::parse_x509_certificate(concatenated).map_err(|_| SplitError {
                index: certificates.len(),
            })?;
        let (certificate, _) = concatenated.split_at(concatenated.len() - rest.len());
        certificates.push(certificate.to_vec());
        concatenated = rest;
    }
    Ok(certificates)
}

/// A self-signed certificate with `uris` as URI SANs, a CA when `ca`: test
/// material for the SVID readers here and in the workload sources.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_leaf(uris: &[&str], ca: bool) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = uris
        .iter()
        .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
        .collect();
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn leaf(uris: &[&str], ca: bool) -> Vec<u8> {
        test_leaf(uris, ca)
    }

    #[test]
    fn a_leaf_has_exactly_one_spiffe_uri_and_is_no_ca() {
        let id = "spiffe://example.org/api";
        let facts = inspect_leaf(&leaf(&[id], false)).unwrap();
        assert_eq!(facts.spiffe_id.as_str(), id);
        assert!(facts.not_after > facts.not_before);
        assert!(!facts.serial.is_empty() && !facts.serial.starts_with('0'));
        assert_eq!(inspect_leaf(&leaf(&[], false)), Err(LeafError::NoSan));
        assert_eq!(
            inspect_leaf(&leaf(&[id, "spiffe://example.org/other"], false)),
            Err(LeafError::UriSanCount { found: 2 })
        );
        assert!(matches!(
            inspect_leaf(&leaf(&["https://example.org/api"], false)),
            Err(LeafError::NotASpiffeId { .. })
        ));
        assert_eq!(
            inspect_leaf(&leaf(&[id], true)),
            Err(LeafError::CaCertificate)
        );
        assert_eq!(inspect_leaf(b"junk"), Err(LeafError::NotACertificate));
    }

    #[test]
    fn concatenated_certificates_split_back() {
        let (a, b) = (
            leaf(&["spiffe://example.org/a"], false),
            leaf(&["spiffe://example.org/b"], false),
        );
        let joined = [a.clone(), b.clone()].concat();
        assert_eq!(split_certificates(&joined).unwrap(), vec![a.clone(), b]);
        assert!(split_certificates(&[]).unwrap().is_empty());
        let mut truncated = a;
        truncated.pop();
        assert_eq!(split_certificates(&truncated), Err(SplitError { index: 0 }));
    }
}
