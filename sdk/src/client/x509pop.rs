//! The client's half of x509pop attestation: a device or host proves it
//! holds the key of its certificate by signing the broker's nonce, with a
//! domain-separation label so that a signature made for anything else cannot
//! be replayed here. The broker's attestor checks exactly these bytes.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    RSA_PKCS1_SHA256, RsaKeyPair,
};
use rustls_pki_types::pem::{PemObject, SectionKind};
use zeroize::Zeroizing;

/// What every signed message starts with.
pub const SIGNING_LABEL: &[u8] = b"mayfly x509pop v1\0";

/// Why a challenge could not be signed. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum X509PopKeyError {
    /// The key file is not PEM.
    #[error("the private key file is not valid PEM")]
    NotPem,
    /// More than one private key in the file.
    #[error("the PEM holds more than one private key")]
    SeveralKeys,
    /// A key in another form than PKCS#8.
    #[error(
        "the key is in {form} form; convert it to PKCS#8 with \
         `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`"
    )]
    NotPkcs8 {
        /// The form found.
        form: &'static str,
    },
    /// No unencrypted PKCS#8 key at all.
    #[error("no unencrypted PKCS#8 private key (-----BEGIN PRIVATE KEY-----) found")]
    NoKey,
    /// A key of a type x509pop does not take.
    #[error(
        "unsupported private key: expected a PKCS#8 P-256, P-384, Ed25519 or RSA (2048-8192 bit) key"
    )]
    UnsupportedKey,
    /// The crypto library failed to sign.
    #[error("signing failed")]
    SigningFailed,
}

/// The exact bytes the client signs: the label, then the nonce
/// (`"mayfly x509pop v1\0" || nonce`).
pub fn signed_message(nonce: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_LABEL.len() + nonce.len());
    message.extend_from_slice(SIGNING_LABEL);
    message.extend_from_slice(nonce);
    message
}

/// Signs [`signed_message`]`(nonce)` with an unencrypted PKCS#8
/// PEM private key (`-----BEGIN PRIVATE KEY-----`): P-256 or P-384 (ECDSA
/// with SHA-256 / SHA-384, ASN.1 DER signature), Ed25519, or RSA 2048–8192
/// bits (PKCS#1 v1.5 with SHA-256).
///
/// # Errors
///
/// The PEM holds no PKCS#8 private key, more than one, or a key of another
/// type. Messages never contain key material.
pub fn sign_challenge(private_key_pem: &[u8], nonce: &[u8]) -> Result<Vec<u8>, X509PopKeyError> {
    let pkcs8 = pkcs8_from_pem(private_key_pem)?;
    let message = signed_message(nonce);
    let rng = SystemRandom::new();
    let signing_failed = |_| X509PopKeyError::SigningFailed;

    if let Ok(key) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8) {
        return key
            .sign(&rng, &message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(signing_failed);
    }
    if let Ok(key) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &pkcs8) {
        return key
            .sign(&rng, &message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(signing_failed);
    }
    if let Ok(key) = Ed25519KeyPair::from_pkcs8(&pkcs8) {
        return Ok(key.sign(&message).as_ref().to_vec());
    }
    if let Ok(key) = RsaKeyPair::from_pkcs8(&pkcs8) {
        // aws-lc-rs requires the buffer to be exactly the modulus length.
        let mut signature = vec![0u8; key.public_modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &rng, &message, &mut signature)
            .map_err(signing_failed)?;
        return Ok(signature);
    }
    Err(X509PopKeyError::UnsupportedKey)
}

/// The one unencrypted PKCS#8 key in `pem`, zeroized on drop.
fn pkcs8_from_pem(pem: &[u8]) -> Result<Zeroizing<Vec<u8>>, X509PopKeyError> {
    let mut pkcs8 = None;
    let mut other_key_kind = None;
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
        // The PEM error could quote a line of the key file: say nothing more.
        let (kind, der) = section.map_err(|_| X509PopKeyError::NotPem)?;
        let der = Zeroizing::new(der);
        match kind {
            SectionKind::PrivateKey if pkcs8.is_some() => {
                return Err(X509PopKeyError::SeveralKeys);
            }
            SectionKind::PrivateKey => pkcs8 = Some(der),
            SectionKind::EcPrivateKey => other_key_kind = Some("SEC1 (EC PRIVATE KEY)"),
            SectionKind::RsaPrivateKey => other_key_kind = Some("PKCS#1 (RSA PRIVATE KEY)"),
            _ => {}
        }
    }
    match (pkcs8, other_key_kind) {
        (Some(pkcs8), _) => Ok(pkcs8),
        (None, Some(form)) => Err(X509PopKeyError::NotPkcs8 { form }),
        (None, None) => Err(X509PopKeyError::NoKey),
    }
}
