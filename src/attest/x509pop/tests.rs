use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, RSA_PSS_SHA256, RsaKeyPair,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    SignatureAlgorithm,
};

use super::*;
use crate::clock::unix_seconds;

const TTL: Duration = Duration::from_secs(30);

/// 2030-03-17: inside every test certificate's validity (rcgen's
/// default is 1975–4096) unless a test sets another.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

type Ca = CertifiedIssuer<'static, KeyPair>;

fn named(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = named(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn root(cn: &str) -> Ca {
    CertifiedIssuer::self_signed(ca_params(cn), p256()).unwrap()
}

fn intermediate(cn: &str, parent: &Ca) -> Ca {
    CertifiedIssuer::signed_by(ca_params(cn), p256(), parent).unwrap()
}

struct Device {
    der: Vec<u8>,
    key: KeyPair,
}

impl Device {
    fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The device certificate alone, as a chain.
    fn chain(&self) -> Vec<Vec<u8>> {
        vec![self.der.clone()]
    }
}

/// CN `cn`, a DNS SAN in mixed case, a URI SAN, serial 01abcd.
fn device_params(cn: &str) -> CertificateParams {
    let mut params = named(cn);
    params.subject_alt_names = vec![
        SanType::DnsName(format!("{cn}.Devices.Example.org").try_into().unwrap()),
        SanType::URI(format!("urn:mayfly:device:{cn}").try_into().unwrap()),
    ];
    params.serial_number = Some(SerialNumber::from_slice(&[0x01, 0xab, 0xcd]));
    params
}

fn issue(params: CertificateParams, alg: &'static SignatureAlgorithm, issuer: &Ca) -> Device {
    let key = KeyPair::generate_for(alg).unwrap();
    let der = params.signed_by(&key, issuer).unwrap().der().to_vec();
    Device { der, key }
}

fn device(cn: &str, issuer: &Ca) -> Device {
    issue(device_params(cn), &rcgen::PKCS_ECDSA_P256_SHA256, issuer)
}

fn attestor(cas: &[&Ca]) -> X509PopAttestor {
    let pem: String = cas.iter().map(|ca| ca.pem()).collect();
    X509PopAttestor::from_ca_pem(pem.as_bytes(), TTL).unwrap()
}

/// Answers a fresh challenge with `key_pem` the way the CLI does.
fn answer(
    attestor: &X509PopAttestor,
    chain: &[Vec<u8>],
    key_pem: &str,
    at: SystemTime,
) -> Result<Attestation, AttestError> {
    let challenge = attestor.new_challenge(unix_seconds(at));
    let signature = sign_challenge(key_pem.as_bytes(), &challenge.nonce).unwrap();
    attestor.verify(chain, &challenge.nonce, &signature, at)
}

fn selectors(attestation: &Attestation) -> Vec<&str> {
    attestation.selectors.iter().map(Selector::as_str).collect()
}

fn ca_selector(ca: &Ca) -> String {
    format!("x509pop:ca:{}", sha256_hex(ca.der()))
}

fn untrusted_reason(result: Result<Attestation, AttestError>) -> String {
    match result {
        Err(AttestError::UntrustedCertificate { reason }) => reason,
        other => panic!("expected UntrustedCertificate, got {other:?}"),
    }
}

fn assert_malformed(result: Result<Attestation, AttestError>, needle: &str) {
    match result {
        Err(AttestError::Malformed { reason }) => {
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
        }
        other => panic!("expected Malformed ({needle}), got {other:?}"),
    }
}

#[test]
fn device_directly_under_the_ca_yields_exact_selectors() {
    let ca = root("Device Root CA");
    let device = device("dev-42", &ca);
    let attestor = attestor(&[&ca]);
    let challenge = attestor.new_challenge(unix_seconds(now()));
    let signature = sign_challenge(device.key_pem().as_bytes(), &challenge.nonce).unwrap();
    let chain = vec![device.der.clone()];

    let attestation = attestor
        .verify(&chain, &challenge.nonce, &signature, now())
        .unwrap();

    let mut expected = vec![
        ca_selector(&ca),
        "x509pop:san:dns:dev-42.devices.example.org".to_owned(),
        "x509pop:san:uri:urn:mayfly:device:dev-42".to_owned(),
        "x509pop:serial:01abcd".to_owned(),
        "x509pop:subject:cn:dev-42".to_owned(),
    ];
    expected.sort();
    assert_eq!(selectors(&attestation), expected);
    assert_eq!(attestation.attestor, "x509pop");
    assert_eq!(attestation.subject, "x509pop:cn=dev-42");
    assert_eq!(attestation.replay, None);
    let mut evidence = device.der.clone();
    evidence.extend_from_slice(&signature);
    assert_eq!(attestation.evidence_sha256, sha256_hex(&evidence));
}

#[test]
fn device_under_an_intermediate_verifies_to_the_configured_root() {
    let ca = root("Device Root CA");
    let issuing = intermediate("Device Issuing CA", &ca);
    let device = device("dev-7", &issuing);
    let attestor = attestor(&[&ca]);

    let chain = vec![device.der.clone(), issuing.der().to_vec()];
    let attestation = answer(&attestor, &chain, &device.key_pem(), now()).unwrap();
    let mut expected = vec![
        ca_selector(&ca),
        "x509pop:san:dns:dev-7.devices.example.org".to_owned(),
        "x509pop:san:uri:urn:mayfly:device:dev-7".to_owned(),
        "x509pop:serial:01abcd".to_owned(),
        "x509pop:subject:cn:dev-7".to_owned(),
    ];
    expected.sort();
    assert_eq!(selectors(&attestation), expected);
    assert_eq!(attestation.subject, "x509pop:cn=dev-7");

    // Without the intermediate the path cannot be built.
    let reason = untrusted_reason(answer(&attestor, &device.chain(), &device.key_pem(), now()));
    assert!(reason.contains("issuer not trusted"), "{reason}");
}

#[test]
fn ca_selector_names_the_root_the_chain_verified_to() {
    let first = root("Fleet A CA");
    let second = root("Fleet B CA");
    let attestor = attestor(&[&first, &second]);
    let a = device("dev-a", &first);
    let b = device("dev-b", &second);

    let from_a = answer(&attestor, &a.chain(), &a.key_pem(), now()).unwrap();
    let from_b = answer(&attestor, &b.chain(), &b.key_pem(), now()).unwrap();
    assert!(selectors(&from_a).contains(&ca_selector(&first).as_str()));
    assert!(!selectors(&from_a).contains(&ca_selector(&second).as_str()));
    assert!(selectors(&from_b).contains(&ca_selector(&second).as_str()));
}

#[test]
fn chain_to_an_untrusted_root_is_refused() {
    let ca = root("Device Root CA");
    let attestor = attestor(&[&ca]);
    let trusted = device("dev-42", &ca);
    assert!(answer(&attestor, &trusted.chain(), &trusted.key_pem(), now()).is_ok());

    let rogue = root("Rogue CA");
    let rogue_device = device("dev-42", &rogue);
    let reason = untrusted_reason(answer(
        &attestor,
        &rogue_device.chain(),
        &rogue_device.key_pem(),
        now(),
    ));
    assert!(reason.contains("issuer not trusted"), "{reason}");

    // Sending the rogue root along does not make it trusted.
    let with_root = vec![rogue_device.der.clone(), rogue.der().to_vec()];
    assert!(matches!(
        answer(&attestor, &with_root, &rogue_device.key_pem(), now()),
        Err(AttestError::UntrustedCertificate { .. })
    ));

    // Same name as the trusted CA, different key: the name alone is not trust.
    let impostor = root("Device Root CA");
    let impostor_device = device("dev-42", &impostor);
    let reason = untrusted_reason(answer(
        &attestor,
        &impostor_device.chain(),
        &impostor_device.key_pem(),
        now(),
    ));
    assert!(reason.contains("signature"), "{reason}");
}

#[test]
fn expired_device_certificate_is_refused() {
    let ca = root("Device Root CA");
    let attestor = attestor(&[&ca]);
    let mut params = device_params("dev-42");
    params.not_before = rcgen::date_time_ymd(2028, 1, 1);
    params.not_after = rcgen::date_time_ymd(2029, 1, 1);
    let device = issue(params, &rcgen::PKCS_ECDSA_P256_SHA256, &ca);
    let chain = vec![device.der.clone()];

    let within = UNIX_EPOCH + Duration::from_secs(1_850_000_000); // 2028-08
    assert!(answer(&attestor, &chain, &device.key_pem(), within).is_ok());

    let reason = untrusted_reason(answer(&attestor, &chain, &device.key_pem(), now()));
    assert!(reason.contains("expired"), "{reason}");
    assert!(reason.contains("the device certificate"), "{reason}");
    assert!(reason.contains("2029-01-01T00:00:00Z"), "{reason}");

    let before = UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027-01
    let reason = untrusted_reason(answer(&attestor, &chain, &device.key_pem(), before));
    assert!(reason.contains("not yet valid"), "{reason}");
}

#[test]
fn expired_intermediate_is_refused() {
    let ca = root("Device Root CA");
    let mut params = ca_params("Old Issuing CA");
    params.not_after = rcgen::date_time_ymd(2029, 1, 1);
    let issuing: Ca = CertifiedIssuer::signed_by(params, p256(), &ca).unwrap();
    let device = device("dev-42", &issuing);
    let attestor = attestor(&[&ca]);
    let chain = vec![device.der.clone(), issuing.der().to_vec()];

    let within = UNIX_EPOCH + Duration::from_secs(1_850_000_000);
    assert!(answer(&attestor, &chain, &device.key_pem(), within).is_ok());
    let reason = untrusted_reason(answer(&attestor, &chain, &device.key_pem(), now()));
    assert!(
        reason.contains("expired") && reason.contains("CA certificate"),
        "{reason}"
    );
}

#[test]
fn signature_over_a_different_nonce_is_refused() {
    let ca = root("Device Root CA");
    let device = device("dev-42", &ca);
    let attestor = attestor(&[&ca]);
    let chain = vec![device.der.clone()];
    let challenge = attestor.new_challenge(unix_seconds(now()));
    let other = attestor.new_challenge(unix_seconds(now()));

    let right = sign_challenge(device.key_pem().as_bytes(), &challenge.nonce).unwrap();
    assert!(
        attestor
            .verify(&chain, &challenge.nonce, &right, now())
            .is_ok()
    );

    let wrong = sign_challenge(device.key_pem().as_bytes(), &other.nonce).unwrap();
    assert_eq!(
        attestor.verify(&chain, &challenge.nonce, &wrong, now()),
        Err(AttestError::BadProofSignature)
    );
}

#[test]
fn signature_by_a_key_other_than_the_certificates_is_refused() {
    let ca = root("Device Root CA");
    let device = device("dev-42", &ca);
    let attestor = attestor(&[&ca]);
    let chain = vec![device.der.clone()];
    assert!(answer(&attestor, &chain, &device.key_pem(), now()).is_ok());

    let thief = p256();
    assert_eq!(
        answer(&attestor, &chain, &thief.serialize_pem(), now()),
        Err(AttestError::BadProofSignature)
    );
    // Another device's key, with a certificate of its own from the same CA.
    let neighbour = self::device("dev-43", &ca);
    assert_eq!(
        answer(&attestor, &chain, &neighbour.key_pem(), now()),
        Err(AttestError::BadProofSignature)
    );
}

#[test]
fn signature_over_the_raw_nonce_without_the_label_is_refused() {
    let ca = root("Device Root CA");
    let device = device("dev-42", &ca);
    let attestor = attestor(&[&ca]);
    let chain = vec![device.der.clone()];
    let challenge = attestor.new_challenge(unix_seconds(now()));
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &device.key.serialize_der())
            .unwrap();
    let rng = SystemRandom::new();

    // The same signer over the labelled message is accepted.
    let labelled = X509PopAttestor::signed_message(&challenge.nonce);
    assert!(labelled.starts_with(b"mayfly x509pop v1\0"));
    let good = key.sign(&rng, &labelled).unwrap();
    assert!(
        attestor
            .verify(&chain, &challenge.nonce, good.as_ref(), now())
            .is_ok()
    );

    let raw = key.sign(&rng, &challenge.nonce).unwrap();
    assert_eq!(
        attestor.verify(&chain, &challenge.nonce, raw.as_ref(), now()),
        Err(AttestError::BadProofSignature)
    );
}

#[test]
fn p384_ed25519_and_rsa_device_keys_verify() {
    let ca = root("Device Root CA");
    let attestor = attestor(&[&ca]);
    for alg in [
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
        &rcgen::PKCS_RSA_SHA256,
    ] {
        let device = issue(device_params("dev-42"), alg, &ca);
        let chain = vec![device.der.clone()];
        let attestation = answer(&attestor, &chain, &device.key_pem(), now())
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert!(selectors(&attestation).contains(&"x509pop:subject:cn:dev-42"));

        let challenge = attestor.new_challenge(unix_seconds(now()));
        let other = attestor.new_challenge(unix_seconds(now()));
        let wrong = sign_challenge(device.key_pem().as_bytes(), &other.nonce).unwrap();
        assert_eq!(
            attestor.verify(&chain, &challenge.nonce, &wrong, now()),
            Err(AttestError::BadProofSignature),
            "{alg:?}"
        );
    }
}

#[test]
fn rsa_pss_proofs_are_accepted() {
    let ca = root("Device Root CA");
    let attestor = attestor(&[&ca]);
    let device = issue(device_params("dev-42"), &rcgen::PKCS_RSA_SHA256, &ca);
    let chain = vec![device.der.clone()];
    let challenge = attestor.new_challenge(unix_seconds(now()));
    let key = RsaKeyPair::from_pkcs8(&device.key.serialize_der()).unwrap();
    let mut signature = vec![0u8; key.public_modulus_len()];
    let message = X509PopAttestor::signed_message(&challenge.nonce);
    key.sign(
        &RSA_PSS_SHA256,
        &SystemRandom::new(),
        &message,
        &mut signature,
    )
    .unwrap();

    assert!(
        attestor
            .verify(&chain, &challenge.nonce, &signature, now())
            .is_ok()
    );
    let mut tampered = signature.clone();
    tampered[10] ^= 1;
    assert_eq!(
        attestor.verify(&chain, &challenge.nonce, &tampered, now()),
        Err(AttestError::BadProofSignature)
    );
}

#[test]
fn unsupported_device_key_type_is_malformed() {
    let ca = root("Device Root CA");
    let attestor = attestor(&[&ca]);
    let supported = device("dev-42", &ca);
    assert!(answer(&attestor, &supported.chain(), &supported.key_pem(), now()).is_ok());

    let p521 = issue(device_params("dev-42"), &rcgen::PKCS_ECDSA_P521_SHA512, &ca);
    let challenge = attestor.new_challenge(unix_seconds(now()));
    let message = X509PopAttestor::signed_message(&challenge.nonce);
    let signature = rcgen::SigningKey::sign(&p521.key, &message).unwrap();
    assert_malformed(
        attestor.verify(&p521.chain(), &challenge.nonce, &signature, now()),
        "key type is not supported",
    );
    // The client refuses the key too, rather than sign with it.
    assert_eq!(
        sign_challenge(p521.key_pem().as_bytes(), &challenge.nonce),
        Err(X509PopKeyError::UnsupportedKey)
    );
}

#[test]
fn malformed_evidence_is_refused() {
    let ca = root("Device Root CA");
    let device = device("dev-42", &ca);
    let attestor = attestor(&[&ca]);
    let challenge = attestor.new_challenge(unix_seconds(now()));
    let signature = sign_challenge(device.key_pem().as_bytes(), &challenge.nonce).unwrap();
    let verify = |chain: &[Vec<u8>], signature: &[u8]| {
        attestor.verify(chain, &challenge.nonce, signature, now())
    };
    assert!(verify(&device.chain(), &signature).is_ok());

    assert_malformed(verify(&[], &signature), "empty");
    assert_malformed(
        verify(&[b"not a certificate".to_vec()], &signature),
        "certificate 1",
    );
    assert_malformed(
        verify(&[vec![0x30, 0x03, 1, 2, 3]], &signature),
        "certificate 1",
    );
    let mut trailing = device.der.clone();
    trailing.push(0);
    assert_malformed(verify(&[trailing], &signature), "trailing");
    assert_malformed(
        verify(&[device.der.clone(), b"garbage".to_vec()], &signature),
        "certificate 2",
    );
    let too_many = vec![device.der.clone(); MAX_CHAIN_CERTIFICATES + 1];
    assert_malformed(verify(&too_many, &signature), "at most 8");
    let exactly_enough = vec![device.der.clone(); MAX_CHAIN_CERTIFICATES];
    assert!(verify(&exactly_enough, &signature).is_ok());
    let huge = vec![0x30; MAX_CERTIFICATE_BYTES + 1];
    assert_malformed(
        verify(&[device.der.clone(), huge], &signature),
        "certificate 2",
    );
    assert_malformed(verify(&device.chain(), &[]), "signature");
    let oversized = vec![0u8; MAX_SIGNATURE_BYTES + 1];
    assert_malformed(verify(&device.chain(), &oversized), "signature");
}

#[test]
fn a_nonce_that_is_not_from_a_challenge_is_refused() {
    let ca = root("Device Root CA");
    let device = device("dev-42", &ca);
    let attestor = attestor(&[&ca]);
    assert!(answer(&attestor, &device.chain(), &device.key_pem(), now()).is_ok());
    let short_nonce = [7u8; 16];
    let signature = sign_challenge(device.key_pem().as_bytes(), &short_nonce).unwrap();
    assert!(matches!(
        attestor.verify(&device.chain(), &short_nonce, &signature, now()),
        Err(AttestError::BadChallenge { .. })
    ));
}

#[test]
fn extended_key_usage_must_allow_client_auth_when_present() {
    let ca = root("Device Root CA");
    let attestor = attestor(&[&ca]);
    let mut client = device_params("dev-42");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = issue(client, &rcgen::PKCS_ECDSA_P256_SHA256, &ca);
    assert!(answer(&attestor, &client.chain(), &client.key_pem(), now()).is_ok());

    let mut server = device_params("dev-42");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = issue(server, &rcgen::PKCS_ECDSA_P256_SHA256, &ca);
    let reason = untrusted_reason(answer(&attestor, &server.chain(), &server.key_pem(), now()));
    assert!(reason.contains("client authentication"), "{reason}");
}

#[test]
fn key_usage_must_allow_digital_signatures_when_present() {
    let ca = root("Device Root CA");
    let attestor = attestor(&[&ca]);
    let mut signing = device_params("dev-42");
    signing.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let signing = issue(signing, &rcgen::PKCS_ECDSA_P256_SHA256, &ca);
    assert!(answer(&attestor, &signing.chain(), &signing.key_pem(), now()).is_ok());

    let mut encrypting = device_params("dev-42");
    encrypting.key_usages = vec![KeyUsagePurpose::KeyAgreement];
    let encrypting = issue(encrypting, &rcgen::PKCS_ECDSA_P256_SHA256, &ca);
    let reason = untrusted_reason(answer(
        &attestor,
        &encrypting.chain(),
        &encrypting.key_pem(),
        now(),
    ));
    assert!(reason.contains("digital signatures"), "{reason}");
}

#[test]
fn a_ca_certificate_cannot_act_as_the_device() {
    let ca = root("Device Root CA");
    let issuing = intermediate("Device Issuing CA", &ca);
    let attestor = attestor(&[&ca]);
    let device = device("dev-42", &issuing);
    let chain = vec![device.der.clone(), issuing.der().to_vec()];
    assert!(answer(&attestor, &chain, &device.key_pem(), now()).is_ok());

    let reason = untrusted_reason(answer(
        &attestor,
        &[issuing.der().to_vec()],
        &issuing.key().serialize_pem(),
        now(),
    ));
    assert!(reason.contains("CA certificate"), "{reason}");
}

#[test]
fn device_without_common_name_is_named_by_serial() {
    let ca = root("Device Root CA");
    let attestor = attestor(&[&ca]);
    let mut params = device_params("dev-42");
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Acme");
    // High bit set: DER pads it with a zero byte, which the selector drops.
    params.serial_number = Some(SerialNumber::from_slice(&[0x80, 0x01]));
    let device = issue(params, &rcgen::PKCS_ECDSA_P256_SHA256, &ca);

    let attestation = answer(&attestor, &device.chain(), &device.key_pem(), now()).unwrap();
    assert_eq!(attestation.subject, "x509pop:serial=8001");
    let found = selectors(&attestation);
    assert!(found.contains(&"x509pop:serial:8001"), "{found:?}");
    assert!(
        !found.iter().any(|s| s.starts_with("x509pop:subject:")),
        "{found:?}"
    );
}

#[test]
fn names_that_cannot_be_selectors_are_left_out() {
    let ca = root("Device Root CA");
    let attestor = attestor(&[&ca]);
    let plain = device("dev-42", &ca);
    let attestation = answer(&attestor, &plain.chain(), &plain.key_pem(), now()).unwrap();
    assert!(selectors(&attestation).contains(&"x509pop:subject:cn:dev-42"));

    // A space: no entry can name it, so it is left out and the rest stands.
    let mut params = device_params("Acme Sensor 42");
    params.subject_alt_names = vec![
        SanType::DnsName("sensor-42.example.org".try_into().unwrap()),
        SanType::URI("urn:has space".try_into().unwrap()),
    ];
    let spaced = issue(params, &rcgen::PKCS_ECDSA_P256_SHA256, &ca);
    let attestation = answer(&attestor, &spaced.chain(), &spaced.key_pem(), now()).unwrap();
    let mut expected = vec![
        ca_selector(&ca),
        "x509pop:san:dns:sensor-42.example.org".to_owned(),
        "x509pop:serial:01abcd".to_owned(),
    ];
    expected.sort();
    assert_eq!(selectors(&attestation), expected);
    assert_eq!(attestation.subject, "x509pop:serial=01abcd");

    // Two common names: which one an entry meant would be ambiguous.
    let mut params = device_params("dev-42");
    params
        .distinguished_name
        .push(DnType::CustomDnType(vec![2, 5, 4, 3]), "dev-43");
    let twice = issue(params, &rcgen::PKCS_ECDSA_P256_SHA256, &ca);
    let attestation = answer(&attestor, &twice.chain(), &twice.key_pem(), now()).unwrap();
    let found = selectors(&attestation);
    assert!(
        !found.iter().any(|s| s.starts_with("x509pop:subject:")),
        "{found:?}"
    );
    assert!(
        found.contains(&"x509pop:san:dns:dev-42.devices.example.org"),
        "{found:?}"
    );
    assert_eq!(attestation.subject, "x509pop:serial=01abcd");
}

#[test]
fn serial_hex_drops_only_the_sign_padding() {
    assert_eq!(serial_hex(&[0x01, 0xab, 0xcd]), "01abcd");
    assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
    assert_eq!(serial_hex(&[0x00]), "00");
    assert_eq!(serial_hex(&[0x40, 0x00]), "4000");
}

#[test]
fn challenges_are_fresh_and_expire_after_the_ttl() {
    let ca = root("Device Root CA");
    let pem = ca.pem();
    let attestor = X509PopAttestor::from_ca_pem(pem.as_bytes(), Duration::from_secs(45)).unwrap();
    assert_eq!(attestor.challenge_ttl(), Duration::from_secs(45));

    let first = attestor.new_challenge(1_900_000_000);
    let second = attestor.new_challenge(1_900_000_000);
    assert_ne!(first.id, second.id);
    assert_ne!(first.nonce, second.nonce);
    assert_eq!(first.id.len(), 32);
    assert!(
        first
            .id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(first.nonce.len(), 32);
    assert_eq!(first.expires_at, 1_900_000_045);
    assert_eq!(second.expires_at, 1_900_000_045);
}

#[test]
fn ca_bundle_is_parsed_strictly() {
    let first = root("Fleet A CA");
    let second = root("Fleet B CA");
    let both = format!("{}{}{}", first.pem(), second.pem(), first.pem());
    let attestor = X509PopAttestor::from_ca_pem(both.as_bytes(), TTL).unwrap();
    assert_eq!(attestor.anchors.len(), 2, "the duplicate is dropped");
    assert!(format!("{attestor:?}").contains(&sha256_hex(first.der())));

    let refused = |pem: &str| match X509PopAttestor::from_ca_pem(pem.as_bytes(), TTL) {
        Err(AttestorConfigError::CaBundle { path: None, source }) => source,
        other => panic!("expected a CA bundle error, got {other:?}"),
    };
    assert!(matches!(refused(""), CaBundleError::NoCertificate));
    assert!(matches!(
        refused("not pem at all"),
        CaBundleError::NoCertificate
    ));
    let error = refused("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    assert!(
        matches!(
            error,
            CaBundleError::Certificate {
                number: 1,
                source: CertificateError::NotDer { .. }
            }
        ),
        "{error}"
    );
    let error = refused("-----BEGIN CERTIFICATE-----\nMIIB\n");
    assert!(matches!(error, CaBundleError::NotPem { .. }), "{error}");
    let with_key = format!("{}{}", first.pem(), first.key().serialize_pem());
    let error = refused(&with_key);
    assert!(
        matches!(&error, CaBundleError::NotCertificate { section: 2, kind } if kind == "PrivateKey"),
        "{error}"
    );
    let leaf = device("dev-42", &first);
    let leaf_pem = pem_of(&leaf.der);
    let error = refused(&leaf_pem);
    assert!(
        matches!(
            error,
            CaBundleError::Certificate {
                number: 1,
                source: CertificateError::NotCa { .. }
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("not a CA certificate"),
        "{error}"
    );
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[test]
fn challenge_ttl_is_bounded() {
    let pem = root("Device Root CA").pem();
    for ok in [Duration::from_secs(1), TTL, MAX_CHALLENGE_TTL] {
        assert!(
            X509PopAttestor::from_ca_pem(pem.as_bytes(), ok).is_ok(),
            "{ok:?}"
        );
    }
    for bad in [
        Duration::ZERO,
        Duration::from_millis(500),
        MAX_CHALLENGE_TTL + Duration::from_secs(1),
    ] {
        let error = X509PopAttestor::from_ca_pem(pem.as_bytes(), bad).unwrap_err();
        assert!(
            matches!(error, AttestorConfigError::ChallengeTtl { ttl, .. } if ttl == bad),
            "{error}"
        );
    }
}

#[test]
fn config_reads_durations_and_names_the_bundle_file() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("device-ca.pem");
    std::fs::write(&bundle, root("Device Root CA").pem()).unwrap();
    let toml_path = toml::Value::String(bundle.display().to_string());

    let config: X509PopConfig = toml::from_str(&format!(
        "ca_bundle = {toml_path}\nchallenge_ttl = \"2m\"\n"
    ))
    .unwrap();
    assert_eq!(config.challenge_ttl, Some(Duration::from_secs(120)));
    assert_eq!(
        X509PopAttestor::new(&config).unwrap().challenge_ttl(),
        Duration::from_secs(120)
    );
    let config: X509PopConfig = toml::from_str(&format!("ca_bundle = {toml_path}\n")).unwrap();
    assert_eq!(config.challenge_ttl, None);
    assert_eq!(
        X509PopAttestor::new(&config).unwrap().challenge_ttl(),
        DEFAULT_CHALLENGE_TTL
    );

    for bad in [
        format!("ca_bundle = {toml_path}\nchallenge_ttl = \"soon\"\n"),
        format!("ca_bundle = {toml_path}\nchallenge_ttl = 30\n"),
        format!("ca_bundle = {toml_path}\nca_path = \"x\"\n"),
        "challenge_ttl = \"30s\"\n".to_owned(),
    ] {
        assert!(toml::from_str::<X509PopConfig>(&bad).is_err(), "{bad}");
    }

    let config: X509PopConfig = toml::from_str(&format!(
        "ca_bundle = {toml_path}\nchallenge_ttl = \"10m\"\n"
    ))
    .unwrap();
    let error = X509PopAttestor::new(&config).unwrap_err();
    assert!(
        matches!(error, AttestorConfigError::ChallengeTtl { ttl, .. } if ttl == Duration::from_secs(600)),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "attestors.x509pop: challenge_ttl must be between 1s and 5m, not 10m"
    );

    let missing = X509PopConfig {
        ca_bundle: dir.path().join("absent.pem"),
        challenge_ttl: None,
        environments: None,
    };
    let error = X509PopAttestor::new(&missing).unwrap_err();
    assert!(
        matches!(&error, AttestorConfigError::ReadCaBundle { path, .. } if *path == missing.ca_bundle),
        "{error}"
    );
    assert!(error.to_string().contains("absent.pem"), "{error}");
    std::fs::write(&bundle, "").unwrap();
    let empty = X509PopConfig {
        ca_bundle: bundle.clone(),
        challenge_ttl: None,
        environments: None,
    };
    let error = X509PopAttestor::new(&empty).unwrap_err();
    assert!(
        matches!(
            &error,
            AttestorConfigError::CaBundle {
                path: Some(path),
                source: CaBundleError::NoCertificate
            } if *path == bundle
        ),
        "{error}"
    );
    // The operator reads which file, and what is wrong with it.
    assert!(
        error.to_string().contains("device-ca.pem") && error.to_string().contains("no CERTIFICATE"),
        "{error}"
    );
}

#[test]
fn sign_challenge_refuses_unusable_keys() {
    let nonce = [1u8; 32];
    let key = p256();
    assert!(sign_challenge(key.serialize_pem().as_bytes(), &nonce).is_ok());

    assert_eq!(
        sign_challenge(root("CA").pem().as_bytes(), &nonce),
        Err(X509PopKeyError::NoKey)
    );
    let two = format!("{}{}", key.serialize_pem(), p256().serialize_pem());
    assert_eq!(
        sign_challenge(two.as_bytes(), &nonce),
        Err(X509PopKeyError::SeveralKeys)
    );
    let sec1 = key.serialize_pem().replace("PRIVATE KEY", "EC PRIVATE KEY");
    let error = sign_challenge(sec1.as_bytes(), &nonce).unwrap_err();
    assert!(matches!(error, X509PopKeyError::NotPkcs8 { .. }));
    assert!(error.to_string().contains("openssl pkcs8"), "{error}");
    let broken = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let error = sign_challenge(broken.as_bytes(), &nonce).unwrap_err();
    assert_eq!(error, X509PopKeyError::UnsupportedKey);
    assert!(!error.to_string().contains("AAAA"));
}
