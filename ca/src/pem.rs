//! Minimal, strict PEM (RFC 7468) for the files this crate writes itself: exactly one block,
//! a known label, standard base64 with padding. Decoding of key files goes into zeroizing
//! buffers, which general-purpose PEM readers do not promise.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// Label of a PKCS#8 private key.
pub(crate) const PRIVATE_KEY: &str = "PRIVATE KEY";
/// Label of an X.509 certificate.
pub(crate) const CERTIFICATE: &str = "CERTIFICATE";

const LINE_LEN: usize = 64;

/// Encodes `der` as one PEM block with 64-character lines and a final newline.
pub(crate) fn encode(label: &str, der: &[u8]) -> Zeroizing<String> {
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

/// Decodes exactly one PEM block labelled `label`; anything but surrounding whitespace is an
/// error (a string saying what).
pub(crate) fn decode(label: &str, text: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = text.trim().lines().map(str::trim_end);
    if lines.next() != Some(begin.as_str()) {
        return Err(format!("does not start with {begin}"));
    }
    let mut body = Zeroizing::new(String::with_capacity(text.len()));
    let mut ended = false;
    for line in lines.by_ref() {
        if line == end {
            ended = true;
            break;
        }
        if line.starts_with("-----") {
            return Err("unexpected PEM boundary".to_string());
        }
        body.push_str(line);
    }
    if !ended {
        return Err(format!("no {end} line"));
    }
    if lines.next().is_some() {
        return Err("data after the PEM block".to_string());
    }
    let mut der = Zeroizing::new(Vec::with_capacity(body.len() / 4 * 3 + 3));
    STANDARD
        .decode_vec(body.as_bytes(), &mut der)
        .map_err(|_| "invalid base64".to_string())?;
    if der.is_empty() {
        return Err("empty PEM block".to_string());
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
