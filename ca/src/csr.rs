//! PKCS#10 certificate signing requests: size limit, strict DER parse, and verification of
//! the self-signature, which proves the requester holds the private key.
//!
//! Only the public key survives: the subject, the requested extensions and every other
//! attribute are dropped here, so nothing the requester wrote can reach a certificate.
//!
//! Accepted keys and signatures:
//!
//! | key | signature |
//! |---|---|
//! | ECDSA P-256, P-384 | ECDSA with SHA-256 or SHA-384 |
//! | Ed25519 | Ed25519 |
//! | RSA, 2048 to 8192 bits | PKCS#1 v1.5 with SHA-256/384/512; PSS with SHA-256/384/512, MGF1 with the same hash, salt as long as the hash |

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_HASH_SHA256,
    OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512, OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::error::CaError;

/// CSRs larger than this are refused before parsing.
pub const MAX_CSR_LEN: usize = 16 * 1024;
/// Smallest RSA modulus we certify.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus we certify (the verifier's limit).
pub const MAX_RSA_BITS: usize = 8192;

const OID_MGF1: &str = "1.2.840.113549.1.1.8";

/// A CSR whose self-signature verified; all that is kept of it is its public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCsr {
    /// The DER `SubjectPublicKeyInfo`, byte for byte as it appeared in the CSR.
    pub subject_public_key_info_der: Vec<u8>,
}

/// Parses a DER PKCS#10 CSR and verifies its signature with the key it contains.
///
/// # Errors
/// - [`CaError::CsrTooLarge`] above [`MAX_CSR_LEN`] bytes (checked first);
/// - [`CaError::CsrMalformed`] if it is not one well-formed DER CSR (trailing bytes included);
/// - [`CaError::CsrUnsupportedKey`] for a key type, curve or size not in the table above;
/// - [`CaError::CsrUnsupportedSignature`] for any other signature algorithm (SHA-1 included);
/// - [`CaError::CsrBadSignature`] if the signature does not verify.
pub fn parse_and_verify_csr(der: &[u8]) -> Result<VerifiedCsr, CaError> {
    if der.len() > MAX_CSR_LEN {
        return Err(CaError::CsrTooLarge {
            len: der.len(),
            max: MAX_CSR_LEN,
        });
    }
    let (rest, request) =
        X509CertificationRequest::from_der(der).map_err(|e| CaError::CsrMalformed {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(CaError::CsrMalformed {
            reason: format!("{} bytes after the CSR", rest.len()),
        });
    }
    let info = &request.certification_request_info;
    if info.version.0 != 0 {
        return Err(CaError::CsrMalformed {
            reason: format!("version {} (only v1 = 0 exists)", info.version.0),
        });
    }
    let spki = &info.subject_pki;
    let key = KeyType::of(spki)?;
    let algorithm = key.verification_algorithm(&request.signature_algorithm)?;
    UnparsedPublicKey::new(algorithm, spki.subject_public_key.data.as_ref())
        .verify(info.raw, request.signature_value.data.as_ref())
        .map_err(|_| CaError::CsrBadSignature)?;
    Ok(VerifiedCsr {
        subject_public_key_info_der: spki.raw.to_vec(),
    })
}

/// The key types we certify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    EcP256,
    EcP384,
    Ed25519,
    Rsa,
}

impl KeyType {
    fn of(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, CaError> {
        let algorithm = &spki.algorithm;
        if algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok())
                .ok_or_else(|| unsupported_key("EC", "named curve missing"))?;
            if curve == OID_EC_P256 {
                Ok(Self::EcP256)
            } else if curve == OID_NIST_EC_P384 {
                Ok(Self::EcP384)
            } else {
                Err(unsupported_key(
                    "EC",
                    &format!(
                        "curve {} (P-256 and P-384 are accepted)",
                        curve.to_id_string()
                    ),
                ))
            }
        } else if algorithm.algorithm == OID_SIG_ED25519 {
            if algorithm.parameters.is_some() {
                return Err(unsupported_key("Ed25519", "parameters must be absent"));
            }
            Ok(Self::Ed25519)
        } else if algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
            if !parameters_absent_or_null(algorithm) {
                return Err(unsupported_key("RSA", "parameters must be NULL"));
            }
            check_rsa_size(spki)?;
            Ok(Self::Rsa)
        } else {
            Err(unsupported_key(
                &algorithm.algorithm.to_id_string(),
                "unsupported key type (EC P-256/P-384, Ed25519 and RSA are accepted)",
            ))
        }
    }

    fn verification_algorithm(
        self,
        signature_algorithm: &AlgorithmIdentifier<'_>,
    ) -> Result<&'static dyn VerificationAlgorithm, CaError> {
        let oid = &signature_algorithm.algorithm;
        let chosen = match self {
            Self::EcP256 | Self::EcP384 => ecdsa_algorithm(self, signature_algorithm),
            Self::Ed25519 => (*oid == OID_SIG_ED25519 && signature_algorithm.parameters.is_none())
                .then_some(&signature::ED25519 as &'static dyn VerificationAlgorithm),
            Self::Rsa if *oid == OID_PKCS1_RSASSAPSS => rsa_pss_algorithm(signature_algorithm),
            Self::Rsa => rsa_pkcs1_algorithm(signature_algorithm),
        };
        chosen.ok_or_else(|| CaError::CsrUnsupportedSignature {
            algorithm: format!("{} for a {self:?} key", oid.to_id_string()),
        })
    }
}

/// ECDSA with SHA-256 or SHA-384 on either curve; RFC 5758 §3.2 forbids parameters.
fn ecdsa_algorithm(
    key: KeyType,
    signature_algorithm: &AlgorithmIdentifier<'_>,
) -> Option<&'static dyn VerificationAlgorithm> {
    if signature_algorithm.parameters.is_some() {
        return None;
    }
    let oid = &signature_algorithm.algorithm;
    let sha256 = *oid == OID_SIG_ECDSA_WITH_SHA256;
    let sha384 = *oid == OID_SIG_ECDSA_WITH_SHA384;
    match key {
        KeyType::EcP256 if sha256 => Some(&signature::ECDSA_P256_SHA256_ASN1),
        KeyType::EcP256 if sha384 => Some(&signature::ECDSA_P256_SHA384_ASN1),
        KeyType::EcP384 if sha256 => Some(&signature::ECDSA_P384_SHA256_ASN1),
        KeyType::EcP384 if sha384 => Some(&signature::ECDSA_P384_SHA384_ASN1),
        _ => None,
    }
}

/// RSASSA-PKCS1-v1_5 with a SHA-2 hash (never SHA-1); parameters NULL or absent.
fn rsa_pkcs1_algorithm(
    signature_algorithm: &AlgorithmIdentifier<'_>,
) -> Option<&'static dyn VerificationAlgorithm> {
    if !parameters_absent_or_null(signature_algorithm) {
        return None;
    }
    let oid = &signature_algorithm.algorithm;
    if *oid == OID_PKCS1_SHA256WITHRSA {
        Some(&signature::RSA_PKCS1_2048_8192_SHA256)
    } else if *oid == OID_PKCS1_SHA384WITHRSA {
        Some(&signature::RSA_PKCS1_2048_8192_SHA384)
    } else if *oid == OID_PKCS1_SHA512WITHRSA {
        Some(&signature::RSA_PKCS1_2048_8192_SHA512)
    } else {
        None
    }
}

/// RSASSA-PSS is accepted only in its one sane shape: a SHA-2 hash, MGF1 with the same hash,
/// a salt as long as the hash, the standard trailer.
fn rsa_pss_algorithm(
    signature_algorithm: &AlgorithmIdentifier<'_>,
) -> Option<&'static dyn VerificationAlgorithm> {
    let parameters = RsaSsaPssParams::try_from(signature_algorithm.parameters.as_ref()?).ok()?;
    let hash = parameters.hash_algorithm_oid();
    let (algorithm, hash_len): (&'static dyn VerificationAlgorithm, u32) =
        if *hash == OID_NIST_HASH_SHA256 {
            (&signature::RSA_PSS_2048_8192_SHA256, 32)
        } else if *hash == OID_NIST_HASH_SHA384 {
            (&signature::RSA_PSS_2048_8192_SHA384, 48)
        } else if *hash == OID_NIST_HASH_SHA512 {
            (&signature::RSA_PSS_2048_8192_SHA512, 64)
        } else {
            return None;
        };
    let mask = parameters.mask_gen_algorithm().ok()?;
    let sane = mask.mgf.to_id_string() == OID_MGF1
        && mask.hash == *hash
        && parameters.salt_length() == hash_len
        && parameters.trailer_field() == 1;
    sane.then_some(algorithm)
}

fn check_rsa_size(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), CaError> {
    let Ok(PublicKey::RSA(key)) = spki.parsed() else {
        return Err(unsupported_key("RSA", "malformed RSAPublicKey"));
    };
    let bits = modulus_bits(key.modulus);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(unsupported_key(
            "RSA",
            &format!("{bits}-bit modulus ({MIN_RSA_BITS} to {MAX_RSA_BITS} bits are accepted)"),
        ));
    }
    Ok(())
}

/// Bit length of a big-endian unsigned integer, ignoring leading zero bytes (DER adds one
/// when the top bit is set).
fn modulus_bits(modulus: &[u8]) -> usize {
    let significant = match modulus.iter().position(|&byte| byte != 0) {
        Some(first) => &modulus[first..],
        None => return 0,
    };
    let top_bits = 8 - significant[0].leading_zeros() as usize;
    (significant.len() - 1) * 8 + top_bits
}

fn parameters_absent_or_null(algorithm: &AlgorithmIdentifier<'_>) -> bool {
    match &algorithm.parameters {
        None => true,
        Some(parameters) => parameters.as_null().is_ok(),
    }
}

fn unsupported_key(algorithm: &str, reason: &str) -> CaError {
    CaError::CsrUnsupportedKey {
        algorithm: algorithm.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn csr_for(key: &KeyPair) -> Vec<u8> {
        let params = CertificateParams::new(vec!["example.org".to_string()]).unwrap();
        params.serialize_request(key).unwrap().der().to_vec()
    }

    fn spki_of(key: &KeyPair) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(key)
    }

    #[test]
    fn accepts_every_supported_key_type() {
        for algorithm in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
            &rcgen::PKCS_RSA_SHA256,
        ] {
            let key = KeyPair::generate_for(algorithm).unwrap();
            let verified = parse_and_verify_csr(&csr_for(&key))
                .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
            assert_eq!(verified.subject_public_key_info_der, spki_of(&key));
        }
    }

    #[test]
    fn flipped_signature_is_refused_next_to_the_valid_csr() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = csr_for(&key);
        assert!(parse_and_verify_csr(&csr).is_ok());
        // The signature BIT STRING is the last element; flip a byte inside it.
        let mut tampered = csr.clone();
        let last = tampered.len() - 5;
        tampered[last] ^= 0x01;
        assert!(matches!(
            parse_and_verify_csr(&tampered),
            Err(CaError::CsrBadSignature)
        ));
    }

    #[test]
    fn tampered_request_info_is_refused() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = csr_for(&key);
        let position = csr
            .windows(11)
            .position(|window| window == b"example.org")
            .unwrap();
        let mut tampered = csr.clone();
        tampered[position] = b'E';
        assert!(matches!(
            parse_and_verify_csr(&tampered),
            Err(CaError::CsrBadSignature)
        ));
    }

    #[test]
    fn no_single_bit_flip_or_truncation_yields_another_key() {
        // A cheap deterministic sweep until a fuzz target exists: every corruption either
        // fails cleanly or (when it only touches bytes the signature does not cover and DER
        // still accepts) yields the original key. Never a panic, never a different key.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = csr_for(&key);
        let original = spki_of(&key);
        for position in 0..csr.len() {
            for bit in [0x01u8, 0x10, 0x80] {
                let mut mutated = csr.clone();
                mutated[position] ^= bit;
                if let Ok(verified) = parse_and_verify_csr(&mutated) {
                    assert_eq!(
                        verified.subject_public_key_info_der, original,
                        "byte {position}"
                    );
                }
            }
            assert!(parse_and_verify_csr(&csr[..position]).is_err());
        }
    }

    #[test]
    fn size_limit_is_checked_before_parsing() {
        let huge = vec![0u8; MAX_CSR_LEN + 1];
        assert!(matches!(
            parse_and_verify_csr(&huge),
            Err(CaError::CsrTooLarge { len, max }) if len == MAX_CSR_LEN + 1 && max == MAX_CSR_LEN
        ));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_malformed() {
        assert!(matches!(
            parse_and_verify_csr(b"not a csr"),
            Err(CaError::CsrMalformed { .. })
        ));
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut csr = csr_for(&key);
        csr.push(0);
        assert!(matches!(
            parse_and_verify_csr(&csr),
            Err(CaError::CsrMalformed { .. })
        ));
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        let key =
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
        assert!(parse_and_verify_csr(&csr_for(&key)).is_ok());
        // rcgen cannot make a 1024-bit key; check the size rule directly.
        assert_eq!(modulus_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
        assert_eq!(modulus_bits(&[0, 0]), 0);
    }

    #[test]
    fn verification_algorithm_table() {
        let ecdsa_sha256 = AlgorithmIdentifier::new(OID_SIG_ECDSA_WITH_SHA256, None);
        assert!(
            KeyType::EcP256
                .verification_algorithm(&ecdsa_sha256)
                .is_ok()
        );
        assert!(
            KeyType::EcP384
                .verification_algorithm(&ecdsa_sha256)
                .is_ok()
        );
        assert!(matches!(
            KeyType::Ed25519.verification_algorithm(&ecdsa_sha256),
            Err(CaError::CsrUnsupportedSignature { .. })
        ));
        assert!(matches!(
            KeyType::Rsa.verification_algorithm(&ecdsa_sha256),
            Err(CaError::CsrUnsupportedSignature { .. })
        ));
        let sha1_rsa =
            AlgorithmIdentifier::new(x509_parser::oid_registry::OID_PKCS1_SHA1WITHRSA, None);
        assert!(matches!(
            KeyType::Rsa.verification_algorithm(&sha1_rsa),
            Err(CaError::CsrUnsupportedSignature { .. })
        ));
        let rsa_sha256 = AlgorithmIdentifier::new(OID_PKCS1_SHA256WITHRSA, None);
        assert!(KeyType::Rsa.verification_algorithm(&rsa_sha256).is_ok());
    }
}
