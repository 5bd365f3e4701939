//! What goes into each kind of certificate (X509-SVID.md §3, §4), in one place.
//!
//! | | root | intermediate | leaf (SVID, server) |
//! |---|---|---|---|
//! | basicConstraints (critical) | CA | CA, pathlen 0 | not CA |
//! | keyUsage (critical) | keyCertSign, cRLSign | keyCertSign, cRLSign | digitalSignature |
//! | extKeyUsage | — | — | serverAuth, clientAuth |
//! | URI SAN | `spiffe://<td>` | `spiffe://<td>` | the SPIFFE ID, exactly one |
//! | SKI / AKI | SKI | SKI, AKI | SKI, AKI |
//!
//! Leaf subject: a constant `O=SPIFFE`. The identity lives only in the URI SAN; a subject that
//! names no workload gives nobody a CN to authorize on by mistake, and staying non-empty
//! avoids the TLS stacks that still mishandle empty subjects.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mayfly_sdk::{SpiffeId, TrustDomain};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::error::CaError;

/// Backdating of `notBefore`, for peers whose clocks run a little behind ours.
pub(crate) const CLOCK_SKEW_ALLOWANCE: i64 = 30;
/// `ub-common-name` (RFC 5280 appendix A).
const MAX_COMMON_NAME_LEN: usize = 64;

/// A validity period in whole seconds since the Unix epoch, as certificates encode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl Validity {
    fn apply(self, params: &mut CertificateParams) -> Result<(), CaError> {
        params.not_before = to_offset(self.not_before)?;
        params.not_after = to_offset(self.not_after)?;
        Ok(())
    }
}

/// A random positive 128-bit serial number and its lowercase hex form.
///
/// The top bit is cleared (DER integers are signed) and the next one set, so the encoding is
/// always exactly 16 bytes and the hex form matches what `openssl x509 -serial` prints.
pub(crate) fn random_serial() -> Result<(SerialNumber, String), CaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CaError::Crypto {
        operation: "generating a serial number",
    })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok((SerialNumber::from_slice(&bytes), hex::encode(bytes)))
}

pub(crate) fn root(
    trust_domain: &TrustDomain,
    validity: Validity,
    serial: SerialNumber,
) -> Result<CertificateParams, CaError> {
    let mut params = signing_certificate(trust_domain, "root", validity, serial)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ok(params)
}

pub(crate) fn intermediate(
    trust_domain: &TrustDomain,
    validity: Validity,
    serial: SerialNumber,
) -> Result<CertificateParams, CaError> {
    let mut params = signing_certificate(trust_domain, "intermediate", validity, serial)?;
    // Only leaves below an intermediate: a stolen intermediate key cannot mint more CAs.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// What a CSR for a new intermediate asks for: the intermediate's names and constraints.
/// The signer decides the certificate anyway; this makes the request self-explanatory to an
/// operator who inspects it (`openssl req -text`).
pub(crate) fn intermediate_request(
    trust_domain: &TrustDomain,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_name("intermediate", trust_domain);
    params.subject_alt_names = vec![SanType::URI(ia5(
        trust_domain.id_string(),
        "trust domain ID",
    )?)];
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    Ok(params)
}

/// A leaf: an X509-SVID (no IP addresses) or a server certificate.
pub(crate) fn leaf(
    spiffe_id: &SpiffeId,
    dns_names: &[String],
    ip_addresses: &[IpAddr],
    validity: Validity,
    serial: SerialNumber,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    validity.apply(&mut params)?;
    params.serial_number = Some(serial);
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, "SPIFFE");
    params.distinguished_name = subject;
    params.subject_alt_names = leaf_names(spiffe_id, dns_names, ip_addresses)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn signing_certificate(
    trust_domain: &TrustDomain,
    kind: &str,
    validity: Validity,
    serial: SerialNumber,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    validity.apply(&mut params)?;
    params.serial_number = Some(serial);
    params.distinguished_name = ca_name(kind, trust_domain);
    params.subject_alt_names = vec![SanType::URI(ia5(
        trust_domain.id_string(),
        "trust domain ID",
    )?)];
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn ca_name(kind: &str, trust_domain: &TrustDomain) -> DistinguishedName {
    let mut common_name = format!("Mayfly {kind} CA {}", trust_domain.as_str());
    if common_name.len() > MAX_COMMON_NAME_LEN {
        // The trust domain is in the URI SAN anyway; keep the name within the X.500 bound.
        common_name = format!("Mayfly {kind} CA");
    }
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Mayfly");
    name.push(DnType::CommonName, common_name);
    name
}

fn leaf_names(
    spiffe_id: &SpiffeId,
    dns_names: &[String],
    ip_addresses: &[IpAddr],
) -> Result<Vec<SanType>, CaError> {
    let mut names = Vec::with_capacity(1 + dns_names.len() + ip_addresses.len());
    names.push(SanType::URI(ia5(
        spiffe_id.as_str().to_string(),
        "SPIFFE ID",
    )?));
    for name in dns_names {
        if !is_valid_dns_name(name) {
            return Err(CaError::InvalidDnsName { name: name.clone() });
        }
        let encoded = Ia5String::try_from(name.as_str())
            .map_err(|_| CaError::InvalidDnsName { name: name.clone() })?;
        names.push(SanType::DnsName(encoded));
    }
    names.extend(ip_addresses.iter().copied().map(SanType::IpAddress));
    Ok(names)
}

fn ia5(value: String, what: &'static str) -> Result<Ia5String, CaError> {
    // SPIFFE IDs are ASCII by construction (SPIFFE-ID.md §2), so this cannot fail for a
    // parsed SpiffeId; an error here is our bug, not the caller's.
    Ia5String::try_from(value).map_err(|e| CaError::internal(what, e))
}

/// A host name as certificate verifiers accept it: LDH labels (underscore tolerated), 1–63
/// bytes each, at most 253 in all, no trailing dot; `*.` allowed as the whole first label.
pub(crate) fn is_valid_dns_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.is_empty() || name.len() > 253 {
        return false;
    }
    rest.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Whole seconds since the epoch; certificates cannot say anything finer.
pub(crate) fn unix_seconds(time: SystemTime) -> Result<i64, CaError> {
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CaError::TimeOutOfRange {
            reason: "before 1970",
        })?;
    i64::try_from(since_epoch.as_secs()).map_err(|_| CaError::TimeOutOfRange {
        reason: "too far in the future",
    })
}

/// Inverse of [`unix_seconds`] for times we produced or parsed from a certificate.
pub(crate) fn system_time(seconds: i64) -> SystemTime {
    // Certificate times before 1970 cannot come from this CA; pin them to the epoch rather
    // than fail, since they are only ever compared with "now".
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// `seconds + duration`, saturating: a lifetime so long it overflows is clamped by the caller
/// to its signer's lifetime anyway.
pub(crate) fn add_seconds(seconds: i64, duration: Duration) -> i64 {
    let duration = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
    seconds.saturating_add(duration)
}

/// A time for messages: RFC 3339 in UTC, or the raw seconds if it cannot be formatted.
pub(crate) fn display_time(seconds: i64) -> String {
    mayfly_sdk::clock::rfc3339(seconds)
}

fn to_offset(seconds: i64) -> Result<OffsetDateTime, CaError> {
    // X.509 GeneralizedTime stops at year 9999.
    const MAX_SECONDS: i64 = 253_402_300_799;
    if seconds > MAX_SECONDS {
        return Err(CaError::TimeOutOfRange {
            reason: "after the year 9999",
        });
    }
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| CaError::TimeOutOfRange {
        reason: "not representable in a certificate",
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for good in [
            "a",
            "api.example.org",
            "*.example.org",
            "x-1.y_2.z",
            "a.b.c",
        ] {
            assert!(is_valid_dns_name(good), "{good}");
        }
        for bad in [
            "",
            "*.",
            "*",
            "a..b",
            "-a.b",
            "a-.b",
            "a.b.",
            "a b",
            "a.*.b",
            "ex\u{e4}mple.org",
            &"a".repeat(64),
            &["a"; 128].join("."),
        ] {
            assert!(!is_valid_dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn serials_are_positive_16_bytes_and_distinct() {
        let (first, first_hex) = random_serial().unwrap();
        let (second, second_hex) = random_serial().unwrap();
        assert_ne!(first, second);
        assert_eq!(first.len(), 16);
        assert_eq!(first_hex.len(), 32);
        assert_eq!(first.to_bytes()[0] & 0xc0, 0x40);
        assert_ne!(first_hex, second_hex);
    }

    #[test]
    fn time_conversions() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_900);
        assert_eq!(unix_seconds(now).unwrap(), 1_700_000_000);
        assert_eq!(
            system_time(1_700_000_000),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert!(unix_seconds(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        assert_eq!(add_seconds(10, Duration::from_secs(5)), 15);
        assert_eq!(add_seconds(10, Duration::MAX), i64::MAX);
        assert!(to_offset(i64::MAX).is_err());
    }
}
