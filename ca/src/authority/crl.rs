//! Certificate revocation lists (RFC 5280 §5), signed by the intermediate.
//!
//! A CRL from [`CertificateAuthority::crl`] is signed by the active intermediate and covers
//! the leaves it signed and no others: relying parties match a CRL to a leaf by issuer name
//! and key identifier. Leaves of an intermediate that has since rotated out need a CRL signed
//! by that intermediate.
//!
//! Entries carry no reason code. RFC 5280 §5.3.1 says to leave the extension out rather than
//! write `unspecified`, and a revocation names credentials without saying why in a form a
//! reason code could hold; claiming `keyCompromise` for every entry would tell relying parties
//! something the broker does not know.

use std::sync::Arc;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;

use super::CertificateAuthority;
use crate::error::CaError;

/// The longest serial accepted, in hex digits: RFC 5280 §4.1.2.2 caps serials at 20 octets.
pub const MAX_SERIAL_HEX_LEN: usize = 40;

/// A revoked certificate, as a CRL lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedSerial {
    /// The certificate's serial number in hex, without separators: what
    /// `mayfly_sdk::revocation::serial_from_bytes` produces (lowercase, leading zeros
    /// dropped). At most [`MAX_SERIAL_HEX_LEN`] digits; an odd count is fine.
    pub serial: String,
    /// When it was revoked, seconds since the Unix epoch.
    pub revoked_at: i64,
}

impl CertificateAuthority {
    /// A DER X.509 v2 CRL listing `revoked`, signed by the active intermediate.
    ///
    /// The issuer is the intermediate's subject, and the authority key identifier is its
    /// subject key identifier, exactly as in every leaf it signs; only those leaves are
    /// covered (see [`intermediate_certificate_der`](Self::intermediate_certificate_der)).
    /// `crl_number` must grow with every CRL this intermediate publishes (RFC 5280 §5.2.3);
    /// the caller keeps it. Times are seconds since the Unix epoch. Entries keep the caller's
    /// order and carry no reason code (`unspecified`): a revocation does not say why in terms
    /// a reason code could hold.
    ///
    /// # Errors
    /// - [`CaError::InvalidSerial`] for a serial that is empty, not hex, or too long;
    /// - [`CaError::InvalidCrlPeriod`] unless `next_update` is after `this_update`;
    /// - [`CaError::TimeOutOfRange`] for a time before 1970 or after the year 9999;
    /// - [`CaError::Internal`] if signing fails.
    pub fn crl(
        &self,
        revoked: &[RevokedSerial],
        this_update: i64,
        next_update: i64,
        crl_number: u64,
    ) -> Result<Vec<u8>, CaError> {
        if next_update <= this_update {
            return Err(CaError::InvalidCrlPeriod {
                this_update,
                next_update,
            });
        }
        let revoked_certs = revoked
            .iter()
            .map(|entry| {
                Ok(RevokedCertParams {
                    serial_number: parse_serial(&entry.serial)?,
                    revocation_time: crl_time(entry.revoked_at)?,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let intermediate = Arc::clone(&self.current.load().intermediate);
        let params = CertificateRevocationListParams {
            this_update: crl_time(this_update)?,
            next_update: crl_time(next_update)?,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: key_identifier(&intermediate.der)?,
        };
        let crl = params
            .signed_by(&intermediate.issuer)
            .map_err(|e| CaError::internal("signing a CRL", e))?;
        Ok(crl.der().to_vec())
    }
}

/// How leaves name an intermediate's key: its subject key identifier, or, lacking one, what
/// rcgen derives for leaves in that case, so a CRL always matches the leaves.
fn key_identifier(intermediate_der: &[u8]) -> Result<KeyIdMethod, CaError> {
    let (_, certificate) = x509_parser::parse_x509_certificate(intermediate_der)
        .map_err(|e| CaError::internal("re-reading the intermediate certificate", e))?;
    let subject_key_identifier =
        certificate
            .extensions()
            .iter()
            .find_map(|extension| match extension.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            });
    Ok(subject_key_identifier.map_or(KeyIdMethod::Sha256, KeyIdMethod::PreSpecified))
}

/// Hex digits (either case, no separators) to the serial's big-endian bytes.
fn parse_serial(serial: &str) -> Result<SerialNumber, CaError> {
    let invalid = |reason: &'static str| CaError::InvalidSerial {
        serial: serial.to_string(),
        reason,
    };
    if serial.is_empty() {
        return Err(invalid("empty"));
    }
    if serial.len() > MAX_SERIAL_HEX_LEN {
        return Err(invalid("longer than 40 hex digits (20 octets)"));
    }
    if !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("not hex digits without separators"));
    }
    // `serial_from_bytes` drops leading zeros, so the digit count may be odd.
    let padded = if serial.len() % 2 == 1 {
        format!("0{serial}")
    } else {
        serial.to_string()
    };
    let bytes = hex::decode(padded).map_err(|_| invalid("not hex digits without separators"))?;
    Ok(SerialNumber::from_slice(&bytes))
}

fn crl_time(seconds: i64) -> Result<OffsetDateTime, CaError> {
    // X.509 GeneralizedTime stops at the end of the year 9999.
    const MAX_SECONDS: i64 = 253_402_300_799;
    if seconds < 0 {
        return Err(CaError::TimeOutOfRange {
            reason: "CRL time before 1970",
        });
    }
    if seconds > MAX_SECONDS {
        return Err(CaError::TimeOutOfRange {
            reason: "CRL time after the year 9999",
        });
    }
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| CaError::TimeOutOfRange {
        reason: "CRL time not representable",
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use mayfly_sdk::TrustDomain;
    use mayfly_sdk::revocation::serial_from_bytes;

    use super::*;
    use crate::CaConfig;

    const T0: i64 = 1_748_736_000;

    fn new_ca() -> (tempfile::TempDir, CertificateAuthority) {
        let dir = tempfile::tempdir().unwrap();
        let config = CaConfig::new(TrustDomain::new("example.org").unwrap());
        let now = UNIX_EPOCH + Duration::from_secs(T0 as u64);
        let (ca, _) = CertificateAuthority::load_or_create(dir.path(), &config, now).unwrap();
        (dir, ca)
    }

    fn revoked(serial: &str) -> RevokedSerial {
        RevokedSerial {
            serial: serial.to_string(),
            revoked_at: T0,
        }
    }

    #[test]
    fn serials_round_trip_from_the_sdk_form() {
        for bytes in [
            vec![0x40, 0x01, 0xff],
            vec![0x0a, 0xbc],
            vec![0x7f; 16],
            vec![0x80, 0x00],
            vec![0xff; 20],
        ] {
            let text = serial_from_bytes(&bytes);
            assert_eq!(parse_serial(&text).unwrap().to_bytes(), bytes, "{text}");
        }
        assert_eq!(parse_serial("0").unwrap().to_bytes(), vec![0]);
        assert_eq!(parse_serial("ABC").unwrap().to_bytes(), vec![0x0a, 0xbc]);
    }

    #[test]
    fn bad_serials_are_refused_next_to_a_good_one() {
        let (_dir, ca) = new_ca();
        assert!(ca.crl(&[revoked("4a0f")], T0, T0 + 3600, 1).is_ok());
        for bad in ["", "4a:0f", "0x4a0f", "4a0g", " 4a0f", &"a".repeat(41)] {
            let error = ca.crl(&[revoked(bad)], T0, T0 + 3600, 1).unwrap_err();
            assert!(
                matches!(&error, CaError::InvalidSerial { serial, .. } if serial == bad),
                "{bad:?}: {error:?}"
            );
            assert!(error.is_caller_error());
        }
        assert!(parse_serial(&"a".repeat(MAX_SERIAL_HEX_LEN)).is_ok());
    }

    #[test]
    fn next_update_must_follow_this_update() {
        let (_dir, ca) = new_ca();
        assert!(ca.crl(&[], T0, T0 + 1, 1).is_ok());
        for next_update in [T0, T0 - 1] {
            assert!(matches!(
                ca.crl(&[], T0, next_update, 1),
                Err(CaError::InvalidCrlPeriod { .. })
            ));
        }
        assert!(matches!(
            ca.crl(&[], -1, T0, 1),
            Err(CaError::TimeOutOfRange { .. })
        ));
        assert!(matches!(
            ca.crl(&[], T0, i64::MAX, 1),
            Err(CaError::TimeOutOfRange { .. })
        ));
        let mut early = revoked("4a0f");
        early.revoked_at = -5;
        assert!(matches!(
            ca.crl(&[early], T0, T0 + 1, 1),
            Err(CaError::TimeOutOfRange { .. })
        ));
    }
}
