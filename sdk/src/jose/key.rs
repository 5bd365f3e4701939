//! A public key that verifies JWS signatures, parsed once.
//!
//! A [`VerificationKey`] is built when a bundle or a JWKS is loaded and then
//! verifies every token its `kid` names, without parsing anything again. For
//! each algorithm it can verify it holds a `jsonwebtoken::crypto::JwtVerifier`
//! over a parsed aws-lc-rs key. jsonwebtoken's own aws-lc-rs verifiers keep
//! the key's bytes (an EC point, or RSA `n` and `e`) and have aws-lc parse
//! them on every call; here the parse happens once, in [`VerificationKey::new`].
//!
//! Accepted: EC P-256 and P-384 points on their curve; RSA moduli of
//! 2048–8192 bits with an odd public exponent of at least 3 and at most 32
//! bits (what every issuer uses; anything else is a mistake or an attack).

use std::fmt;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA256, RsaPublicKeyComponents, VerificationAlgorithm,
};
use jsonwebtoken::crypto::JwtVerifier;
use jsonwebtoken::signature::{self, Verifier};

use super::algorithm::JwsAlgorithm;
use crate::bundle::JwtPublicKey;

/// The RSA modulus sizes accepted, in bits.
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The type of a [`VerificationKey`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on P-256 (ES256).
    EcP256,
    /// ECDSA on P-384 (ES384).
    EcP384,
    /// RSA (RS256, PS256).
    Rsa {
        /// The modulus size.
        modulus_bits: usize,
    },
}

impl KeyType {
    /// The algorithms a key of this type verifies.
    pub fn algorithms(self) -> &'static [JwsAlgorithm] {
        match self {
            Self::EcP256 => &[JwsAlgorithm::Es256],
            Self::EcP384 => &[JwsAlgorithm::Es384],
            Self::Rsa { .. } => &[JwsAlgorithm::Rs256, JwsAlgorithm::Ps256],
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcP256 => f.write_str("EC P-256"),
            Self::EcP384 => f.write_str("EC P-384"),
            Self::Rsa { modulus_bits } => write!(f, "RSA-{modulus_bits}"),
        }
    }
}

/// Why a public key cannot verify anything.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The EC coordinates are not a point on the named curve.
    #[error("(x, y) is not a point on the {curve} curve")]
    NotOnCurve {
        /// `P-256` or `P-384`.
        curve: &'static str,
    },
    /// The RSA modulus is shorter than 2048 or longer than 8192 bits.
    #[error("the RSA modulus is {bits} bits; 2048 to 8192 are accepted")]
    RsaModulusSize {
        /// Its size, leading zero bits not counted.
        bits: usize,
    },
    /// The RSA public exponent is even, below 3 or above 32 bits.
    #[error("the RSA exponent must be odd, at least 3 and at most 32 bits")]
    RsaExponent,
    /// aws-lc refused the RSA key.
    #[error("not a valid RSA public key")]
    InvalidRsaKey,
}

/// One algorithm's verifier over a key parsed once: jsonwebtoken's
/// `JwtVerifier`, backed by aws-lc-rs.
#[derive(Clone)]
struct ParsedVerifier {
    algorithm: JwsAlgorithm,
    key: ParsedPublicKey,
}

impl ParsedVerifier {
    fn new(
        algorithm: JwsAlgorithm,
        verification: &'static dyn VerificationAlgorithm,
        key: &[u8],
    ) -> Option<Self> {
        let key = ParsedPublicKey::new(verification, key).ok()?;
        Some(Self { algorithm, key })
    }
}

impl Verifier<Vec<u8>> for ParsedVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        // aws-lc says only "unspecified": the signature is wrong, whatever
        // the detail, so none is passed on.
        self.key
            .verify_sig(message, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for ParsedVerifier {
    fn algorithm(&self) -> jsonwebtoken::Algorithm {
        self.algorithm.to_jsonwebtoken()
    }
}

/// A JWS verification key, parsed once; cheap to clone (the parsed key is
/// shared, and never mutated).
#[derive(Clone)]
pub struct VerificationKey {
    key_type: KeyType,
    /// One per algorithm of `key_type.algorithms()`, in that order.
    verifiers: Vec<ParsedVerifier>,
}

impl VerificationKey {
    /// Parses and checks `public_key`.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotOnCurve`] for an EC point off its curve;
    /// [`KeyError::RsaModulusSize`], [`KeyError::RsaExponent`] or
    /// [`KeyError::InvalidRsaKey`] for an RSA key outside what is accepted.
    pub fn new(public_key: &JwtPublicKey) -> Result<Self, KeyError> {
        match public_key {
            JwtPublicKey::EcP256 { x, y } => Self::ec(KeyType::EcP256, "P-256", x, y),
            JwtPublicKey::EcP384 { x, y } => Self::ec(KeyType::EcP384, "P-384", x, y),
            JwtPublicKey::Rsa { n, e } => Self::rsa(n, e),
        }
    }

    fn ec(key_type: KeyType, curve: &'static str, x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        let (algorithm, verification): (_, &'static dyn VerificationAlgorithm) = match key_type {
            KeyType::EcP384 => (JwsAlgorithm::Es384, &ECDSA_P384_SHA384_FIXED),
            _ => (JwsAlgorithm::Es256, &ECDSA_P256_SHA256_FIXED),
        };
        // SEC 1 uncompressed point: 0x04 || x || y.
        let point = [&[0x04][..], x, y].concat();
        let verifier = ParsedVerifier::new(algorithm, verification, &point)
            .ok_or(KeyError::NotOnCurve { curve })?;
        Ok(Self {
            key_type,
            verifiers: vec![verifier],
        })
    }

    fn rsa(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_length(n);
        if !RSA_MODULUS_BITS.contains(&bits) {
            return Err(KeyError::RsaModulusSize { bits });
        }
        let exponent = e
            .iter()
            .fold(0u64, |value, byte| value << 8 | u64::from(*byte));
        if e.len() > 4 || exponent < 3 || exponent % 2 == 0 {
            return Err(KeyError::RsaExponent);
        }
        let components = RsaPublicKeyComponents { n, e };
        let parse = |algorithm, parameters| {
            let key = components
                .to_parsed_public_key(parameters)
                .map_err(|_| KeyError::InvalidRsaKey)?;
            Ok(ParsedVerifier { algorithm, key })
        };
        Ok(Self {
            key_type: KeyType::Rsa { modulus_bits: bits },
            verifiers: vec![
                parse(JwsAlgorithm::Rs256, &RSA_PKCS1_2048_8192_SHA256)?,
                parse(JwsAlgorithm::Ps256, &RSA_PSS_2048_8192_SHA256)?,
            ],
        })
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The algorithms this key verifies.
    pub fn algorithms(&self) -> &'static [JwsAlgorithm] {
        self.key_type.algorithms()
    }

    /// The verifier for `algorithm`, or `None` when this key's type cannot
    /// verify it.
    pub(crate) fn verifier(&self, algorithm: JwsAlgorithm) -> Option<&dyn JwtVerifier> {
        self.verifiers
            .iter()
            .find(|verifier| verifier.algorithm == algorithm)
            .map(|verifier| verifier as &dyn JwtVerifier)
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

/// An unsigned big-endian integer without its leading zero octets: RFC 7518
/// §6.3.1 asks producers for the minimal form, and reading a padded one as
/// the same integer keeps one key from having two spellings.
pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// The number of significant bits of an unsigned big-endian integer.
fn bit_length(n: &[u8]) -> usize {
    let n = strip_leading_zeros(n);
    match n.first() {
        None => 0,
        Some(&top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256,
        RSA_PSS_SHA256, RsaKeyPair,
    };

    use super::*;

    fn p256() -> (EcdsaKeyPair, JwtPublicKey) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let public = JwtPublicKey::EcP256 {
            x: point[1..33].try_into().unwrap(),
            y: point[33..].try_into().unwrap(),
        };
        (pair, public)
    }

    fn verify(key: &VerificationKey, alg: JwsAlgorithm, message: &[u8], sig: &[u8]) -> bool {
        key.verifier(alg)
            .is_some_and(|verifier| verifier.verify(message, &sig.to_vec()).is_ok())
    }

    #[test]
    fn an_ec_key_verifies_its_own_signatures_only() {
        let (pair, public) = p256();
        let key = VerificationKey::new(&public).unwrap();
        assert_eq!(key.key_type(), KeyType::EcP256);
        let signature = pair.sign(&SystemRandom::new(), b"message").unwrap();
        assert!(verify(
            &key,
            JwsAlgorithm::Es256,
            b"message",
            signature.as_ref()
        ));
        assert!(!verify(
            &key,
            JwsAlgorithm::Es256,
            b"massage",
            signature.as_ref()
        ));
        let verifier = key.verifier(JwsAlgorithm::Es256).unwrap();
        assert_eq!(verifier.algorithm(), jsonwebtoken::Algorithm::ES256);
        // An EC P-256 key has no verifier for another algorithm at all.
        for alg in [
            JwsAlgorithm::Es384,
            JwsAlgorithm::Rs256,
            JwsAlgorithm::Ps256,
        ] {
            assert!(key.verifier(alg).is_none(), "{alg}");
        }
        assert_eq!(
            format!("{key:?}"),
            "VerificationKey { key_type: EcP256, .. }"
        );
    }

    #[test]
    fn an_rsa_key_verifies_both_paddings_and_keeps_them_apart() {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = pair.public_key();
        let key = VerificationKey::new(&JwtPublicKey::Rsa {
            n: public.modulus().big_endian_without_leading_zero().to_vec(),
            e: public.exponent().big_endian_without_leading_zero().to_vec(),
        })
        .unwrap();
        assert_eq!(key.key_type(), KeyType::Rsa { modulus_bits: 2048 });
        assert_eq!(key.key_type().to_string(), "RSA-2048");
        let sign = |padding: &'static dyn aws_lc_rs::signature::RsaEncoding| {
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(padding, &SystemRandom::new(), b"m", &mut signature)
                .unwrap();
            signature
        };
        let pkcs1 = sign(&RSA_PKCS1_SHA256);
        let pss = sign(&RSA_PSS_SHA256);
        assert!(verify(&key, JwsAlgorithm::Rs256, b"m", &pkcs1));
        assert!(verify(&key, JwsAlgorithm::Ps256, b"m", &pss));
        assert!(!verify(&key, JwsAlgorithm::Ps256, b"m", &pkcs1));
        assert!(!verify(&key, JwsAlgorithm::Rs256, b"m", &pss));
        assert!(key.verifier(JwsAlgorithm::Es256).is_none());
    }

    #[test]
    fn unusable_keys_are_refused_at_construction() {
        let (_, good) = p256();
        assert!(VerificationKey::new(&good).is_ok());
        let JwtPublicKey::EcP256 { x, .. } = good else {
            unreachable!()
        };
        assert_eq!(
            VerificationKey::new(&JwtPublicKey::EcP256 { x, y: x })
                .unwrap_err()
                .to_string(),
            "(x, y) is not a point on the P-256 curve"
        );
        let rsa = |n: Vec<u8>, e: Vec<u8>| VerificationKey::new(&JwtPublicKey::Rsa { n, e });
        let modulus = |bits: usize| {
            let mut n = vec![0xff; bits / 8];
            n[0] = 0xc3;
            n
        };
        assert_eq!(
            rsa(modulus(1024), vec![1, 0, 1]).unwrap_err(),
            KeyError::RsaModulusSize { bits: 1024 }
        );
        assert_eq!(
            rsa(modulus(8200), vec![1, 0, 1]).unwrap_err(),
            KeyError::RsaModulusSize { bits: 8200 }
        );
        assert_eq!(
            rsa(Vec::new(), vec![1, 0, 1]).unwrap_err(),
            KeyError::RsaModulusSize { bits: 0 }
        );
        for e in [vec![], vec![1], vec![2], vec![1, 0, 0], vec![1, 0, 0, 0, 1]] {
            assert_eq!(
                rsa(modulus(2048), e.clone()).unwrap_err(),
                KeyError::RsaExponent,
                "{e:?}"
            );
        }
    }

    #[test]
    fn leading_zero_octets_do_not_count() {
        assert_eq!(strip_leading_zeros(&[0, 0, 1, 0]), [1, 0]);
        assert_eq!(strip_leading_zeros(&[0, 0]), [0u8; 0]);
        assert_eq!(bit_length(&[0x00, 0x01, 0x00]), 9);
        assert_eq!(bit_length(&[0x80; 256]), 2048);
        assert_eq!(bit_length(&[]), 0);
    }
}
