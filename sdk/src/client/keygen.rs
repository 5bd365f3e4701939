//! Key pairs and certificate signing requests for X509-SVIDs.
//!
//! The private key is generated here and never leaves this machine; the broker sees only
//! the CSR, from which it takes nothing but the public key.

use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::error::ClientError;

/// A fresh ECDSA P-256 key pair and a PKCS#10 CSR (DER) for it.
///
/// The CSR's subject is empty: the broker takes the identity from the registration entry,
/// never from the request, so anything written here would only mislead.
///
/// # Errors
/// [`ClientError::KeyGeneration`] if the crypto library fails (not expected).
pub fn new_key_and_csr() -> Result<(KeyPair, Vec<u8>), ClientError> {
    let failed = |e: rcgen::Error| ClientError::KeyGeneration {
        reason: e.to_string(),
    };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(failed)?;
    Ok((key, csr.der().to_vec()))
}

/// Whether the certificate `leaf_der` certifies the public key of `key`.
///
/// # Errors
/// [`ClientError::BadResponse`] if the certificate does not parse.
pub fn certifies_key(leaf_der: &[u8], key: &KeyPair) -> Result<bool, ClientError> {
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der).map_err(|e| {
        ClientError::bad_response(format!("the leaf certificate does not parse: {e}"))
    })?;
    Ok(leaf.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_carries_the_new_public_key() -> Result<(), Box<dyn std::error::Error>> {
        use x509_parser::prelude::FromDer;
        let (key, der) = new_key_and_csr()?;
        let (rest, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der)?;
        assert!(rest.is_empty());
        csr.verify_signature()?;
        let info = &csr.certification_request_info;
        assert_eq!(
            info.subject_pki.subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        assert_eq!(info.subject.iter_attributes().count(), 0);
        Ok(())
    }

    #[test]
    fn keys_are_fresh_each_time() -> Result<(), Box<dyn std::error::Error>> {
        let (a, _) = new_key_and_csr()?;
        let (b, _) = new_key_and_csr()?;
        assert_ne!(a.public_key_raw(), b.public_key_raw());
        Ok(())
    }

    #[test]
    fn certifies_key_matches_only_its_own_key() -> Result<(), Box<dyn std::error::Error>> {
        let (key, _) = new_key_and_csr()?;
        let (other, _) = new_key_and_csr()?;
        let cert = CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
        assert!(certifies_key(cert.der(), &key)?);
        assert!(!certifies_key(cert.der(), &other)?);
        assert!(certifies_key(b"not a certificate", &key).is_err());
        Ok(())
    }
}
