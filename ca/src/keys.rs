//! ECDSA P-256 signing keys, parsed once and kept in memory.

use std::fmt;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use zeroize::Zeroizing;

use crate::error::CaError;
use mayfly_sdk::files;
use mayfly_sdk::pem;

/// An ECDSA P-256 private key used to sign certificates (ASN.1 DER signatures).
///
/// The PKCS#8 encoding kept for writing the key back to disk is zeroized on drop; the parsed
/// key lives inside aws-lc, which clears key memory when it frees it. `Debug` prints only
/// the algorithm and a fingerprint of the public key.
pub struct SigningKey {
    key_pair: EcdsaKeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl SigningKey {
    /// Generates a fresh P-256 key.
    ///
    /// # Errors
    /// [`CaError::Crypto`] if the key cannot be generated.
    pub fn generate() -> Result<Self, CaError> {
        let key_pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(|_| {
            CaError::Crypto {
                operation: "generating a P-256 key",
            }
        })?;
        let document = key_pair.to_pkcs8v1().map_err(|_| CaError::Crypto {
            operation: "encoding a P-256 key as PKCS#8",
        })?;
        // `document` zeroizes its own copy when dropped.
        let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
        Ok(Self { key_pair, pkcs8 })
    }

    /// Parses a PKCS#8 DER P-256 private key.
    ///
    /// # Errors
    /// [`CaError::InvalidKey`] if it is not a valid P-256 PKCS#8 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CaError> {
        Self::parse(der, "PKCS#8 DER")
    }

    /// Parses a PKCS#8 PEM (`PRIVATE KEY`) P-256 private key.
    ///
    /// # Errors
    /// [`CaError::InvalidKey`] if it is not exactly one valid P-256 PKCS#8 PEM block.
    pub fn from_pkcs8_pem(pem_text: &[u8]) -> Result<Self, CaError> {
        let der =
            pem::decode(pem::PRIVATE_KEY, pem_text).map_err(|reason| CaError::InvalidKey {
                context: "PKCS#8 PEM".to_string(),
                reason: reason.to_string(),
            })?;
        Self::parse(&der, "PKCS#8 PEM")
    }

    /// Reads and parses a PKCS#8 PEM key file, refusing it when others can read it.
    pub(crate) fn load(path: &Path) -> Result<Self, CaError> {
        let text = files::read_secret_file(path)?;
        let der = pem::decode(pem::PRIVATE_KEY, &text).map_err(|reason| CaError::InvalidPem {
            path: path.to_path_buf(),
            expected_label: pem::PRIVATE_KEY,
            reason: reason.to_string(),
        })?;
        Self::parse(&der, &path.display().to_string())
    }

    /// Writes the key as PKCS#8 PEM, atomically, mode `0600`.
    pub(crate) fn store(&self, path: &Path) -> Result<(), CaError> {
        let pem_text = pem::encode(pem::PRIVATE_KEY, &self.pkcs8);
        Ok(files::write_secret_atomic(path, pem_text.as_bytes())?)
    }

    fn parse(der: &[u8], context: &str) -> Result<Self, CaError> {
        let key_pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).map_err(|rejected| {
                CaError::InvalidKey {
                    context: context.to_string(),
                    reason: rejected.to_string(),
                }
            })?;
        Ok(Self {
            key_pair,
            pkcs8: Zeroizing::new(der.to_vec()),
        })
    }

    /// The PKCS#8 DER encoding; crate-private so secret bytes leave only through files we
    /// write with mode `0600` or through types that redact them.
    pub(crate) fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as an uncompressed SEC1 point (`04 || x || y`, 65 bytes).
    pub fn public_key_uncompressed(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }

    /// The DER `SubjectPublicKeyInfo` of the public key.
    pub fn subject_public_key_info_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(self)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.public_key_uncompressed());
        f.debug_struct("SigningKey")
            .field("algorithm", &"ECDSA P-256")
            .field("public_key_sha256", &hex::encode(&digest.as_ref()[..8]))
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl rcgen::PublicKeyData for SigningKey {
    fn der_bytes(&self) -> &[u8] {
        self.public_key_uncompressed()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for SigningKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signature = self
            .key_pair
            .sign(&SystemRandom::new(), message)
            .map_err(|_| rcgen::Error::RingUnspecified)?;
        Ok(signature.as_ref().to_vec())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let key = SigningKey::generate().unwrap();
        let pem_text = pem::encode(pem::PRIVATE_KEY, key.pkcs8_der());
        let again = SigningKey::from_pkcs8_pem(pem_text.as_bytes()).unwrap();
        assert_eq!(
            key.public_key_uncompressed(),
            again.public_key_uncompressed()
        );
        assert_eq!(key.public_key_uncompressed().len(), 65);
    }

    #[test]
    fn garbage_is_refused_next_to_a_valid_key() {
        let key = SigningKey::generate().unwrap();
        assert!(SigningKey::from_pkcs8_der(key.pkcs8_der()).is_ok());
        let mut broken = key.pkcs8_der().to_vec();
        broken.truncate(broken.len() / 2);
        assert!(matches!(
            SigningKey::from_pkcs8_der(&broken),
            Err(CaError::InvalidKey { .. })
        ));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = SigningKey::generate().unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("[redacted]"));
        let pem_text = pem::encode(pem::PRIVATE_KEY, key.pkcs8_der());
        let body_line = pem_text.lines().nth(1).unwrap();
        assert!(!debug.contains(body_line));
        assert!(!debug.contains(&hex::encode(key.pkcs8_der())[..32]));
        assert!(!debug.contains("PRIVATE KEY"));
    }
}
