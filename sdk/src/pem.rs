//! Minimal, strict PEM (RFC 7468), the one encoder every Mayfly component writes keys,
//! certificates and bundles with: exactly one block per decode, a known label, standard
//! base64 with padding, 64-character lines. Decoding goes into zeroizing buffers, which
//! general-purpose PEM readers do not promise.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// Label of a PKCS#8 private key.
pub const PRIVATE_KEY: &str = "PRIVATE KEY";
/// Label of an X.509 certificate.
pub const CERTIFICATE: &str = "CERTIFICATE";
/// Label of a PKCS#10 certificate signing request.
pub const CERTIFICATE_REQUEST: &str = "CERTIFICATE REQUEST";

/// Why a text is not the one PEM block expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The text is not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// The first line is not the expected BEGIN line.
    #[error("does not start with -----BEGIN {label}-----")]
    NoBegin {
        /// The label expected.
        label: String,
    },
    /// A BEGIN or END line of another block inside the block.
    #[error("unexpected PEM boundary")]
    UnexpectedBoundary,
    /// The END line is missing.
    #[error("no -----END {label}----- line")]
    NoEnd {
        /// The label expected.
        label: String,
    },
    /// Something follows the block.
    #[error("data after the PEM block")]
    TrailingData,
    /// The body is not standard base64.
    #[error("invalid base64")]
    BadBase64,
    /// The block holds nothing.
    #[error("empty PEM block")]
    Empty,
}

const LINE_LEN: usize = 64;

/// Encodes `der` as one PEM block with 64-character lines and a final newline.
pub fn encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(STANDARD.encode(der));
    let lines = body.len().div_ceil(LINE_LEN);
    let mut out = Zeroizing::new(String::with_capacity(
        body.len() + lines + 2 * (label.len() + 17),
    ));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in body.as_bytes().chunks(LINE_LEN) {
        // `body` is base64, hence ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// DER certificates as concatenated PEM `CERTIFICATE` blocks (a chain or a bundle).
pub fn certificates<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    ders.into_iter()
        .map(|der| encode(CERTIFICATE, der).to_string())
        .collect()
}

/// Decodes exactly one PEM block labelled `label`; anything but surrounding whitespace is an
/// error.
///
/// # Errors
/// [`PemError`], naming what is wrong.
pub fn decode(label: &str, text: &[u8]) -> Result<Zeroizing<Vec<u8>>, PemError> {
    let text = std::str::from_utf8(text).map_err(|_| PemError::NotUtf8)?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = text.trim().lines().map(str::trim_end);
    if lines.next() != Some(begin.as_str()) {
        return Err(PemError::NoBegin {
            label: label.to_owned(),
        });
    }
    let mut body = Zeroizing::new(String::with_capacity(text.len()));
    let mut ended = false;
    for line in lines.by_ref() {
        if line == end {
            ended = true;
            break;
        }
        if line.starts_with("-----") {
            return Err(PemError::UnexpectedBoundary);
        }
        body.push_str(line);
    }
    if !ended {
        return Err(PemError::NoEnd {
            label: label.to_owned(),
        });
    }
    if lines.next().is_some() {
        return Err(PemError::TrailingData);
    }
    let mut der = Zeroizing::new(Vec::with_capacity(body.len() / 4 * 3 + 3));
    STANDARD
        .decode_vec(body.as_bytes(), &mut der)
        .map_err(|_| PemError::BadBase64)?;
    if der.is_empty() {
        return Err(PemError::Empty);
    }
    Ok(der)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_wraps_lines() {
        let der: Vec<u8> = (0..=255).collect();
        let pem = encode(CERTIFICATE, &der);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));
        assert_eq!(&*decode(CERTIFICATE, pem.as_bytes()).unwrap(), &der);
    }

    #[test]
    fn rejects_wrong_label_trailing_blocks_and_bad_base64() {
        let pem = encode(CERTIFICATE, b"abc");
        assert!(decode(CERTIFICATE, pem.as_bytes()).is_ok());
        assert!(decode(PRIVATE_KEY, pem.as_bytes()).is_err());
        let twice = format!("{}{}", *pem, *pem);
        assert!(decode(CERTIFICATE, twice.as_bytes()).is_err());
        let broken = pem.replace("YWJj", "YW!j");
        assert!(decode(CERTIFICATE, broken.as_bytes()).is_err());
        assert!(decode(CERTIFICATE, b"-----BEGIN CERTIFICATE-----\n").is_err());
    }
}
