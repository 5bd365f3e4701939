//! CRLs signed by the intermediate, checked by the `openssl` CLI and x509-parser.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use mayfly_ca::{CertificateAuthority, IssuedX509Svid, RevokedSerial, X509SvidRequest};
use mayfly_sdk::revocation::serial_from_bytes;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer as _;
use x509_parser::revocation_list::CertificateRevocationList;

const WORKLOAD: &str = "spiffe://example.org/billing/api";
const OTHER_WORKLOAD: &str = "spiffe://example.org/billing/db";
const CRL_NUMBER: u64 = 7;

fn t0_seconds() -> i64 {
    i64::try_from(T0_SECONDS).unwrap()
}

fn issue(ca: &CertificateAuthority, id: &str) -> IssuedX509Svid {
    let csr = hostile_csr(&p256_key());
    let id = spiffe_id(id);
    ca.issue_x509_svid(&X509SvidRequest {
        csr_der: &csr,
        spiffe_id: &id,
        dns_names: &[],
        ttl: Duration::from_secs(3600),
        now: t0(),
    })
    .unwrap()
}

fn root_der(ca: &CertificateAuthority) -> Vec<u8> {
    ca.root_certificate_der().to_vec()
}

/// The intermediate that signs leaves and CRLs now.
fn intermediate_der(ca: &CertificateAuthority) -> Vec<u8> {
    ca.intermediate_certificate_der().to_vec()
}

/// The serial as the broker's revocation index spells it.
fn serial_of(svid: &IssuedX509Svid) -> String {
    serial_from_bytes(parse(&svid.cert_chain_der[0]).raw_serial())
}

/// A CRL revoking `svid`, valid from T0 + 60 s for an hour.
fn crl_revoking(ca: &CertificateAuthority, svid: &IssuedX509Svid) -> Vec<u8> {
    let revoked = [RevokedSerial {
        serial: serial_of(svid),
        revoked_at: t0_seconds() + 30,
    }];
    ca.crl(&revoked, t0_seconds() + 60, t0_seconds() + 3660, CRL_NUMBER)
        .unwrap()
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn run_openssl(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `openssl crl -inform DER -CAfile <signer> -noout`: checks the CRL's signature with the
/// given certificate. Returns (verified, output).
fn openssl_crl_verify(crl_der: &[u8], signer_der: &[u8]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let crl = write(dir.path(), "crl.der", crl_der);
    let signer = write(
        dir.path(),
        "intermediate.pem",
        pem("CERTIFICATE", signer_der),
    );
    let (success, text) = run_openssl(&[
        "crl".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        crl.as_os_str(),
        "-CAfile".as_ref(),
        signer.as_os_str(),
        "-noout".as_ref(),
    ]);
    (success && text.contains("verify OK"), text)
}

/// `openssl verify -x509_strict -crl_check` of `leaf` under `ca`'s root and intermediate,
/// with `crl_der` as the only CRL, at T0 + 120 s. Returns (verified, output).
fn openssl_verify_with_crl(
    ca: &CertificateAuthority,
    crl_der: &[u8],
    leaf_der: &[u8],
) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = write(dir.path(), "root.pem", pem("CERTIFICATE", &root_der(ca)));
    let intermediate = write(
        dir.path(),
        "intermediate.pem",
        pem("CERTIFICATE", &intermediate_der(ca)),
    );
    let crl = write(dir.path(), "crl.pem", pem("X509 CRL", crl_der));
    let leaf = write(dir.path(), "leaf.pem", pem("CERTIFICATE", leaf_der));
    let at = (t0_seconds() + 120).to_string();
    let (success, text) = run_openssl(&[
        "verify".as_ref(),
        "-x509_strict".as_ref(),
        "-crl_check".as_ref(),
        "-attime".as_ref(),
        at.as_ref(),
        "-CAfile".as_ref(),
        root.as_os_str(),
        "-untrusted".as_ref(),
        intermediate.as_os_str(),
        "-CRLfile".as_ref(),
        crl.as_os_str(),
        leaf.as_os_str(),
    ]);
    let ok = success && text.contains(&format!("{}: OK", leaf.display()));
    (ok, text)
}

#[test]
fn openssl_verifies_the_crl_signature_with_the_intermediate_only() {
    let (_dir, ca) = new_ca();
    let (_other_dir, other) = new_ca();
    let revoked = issue(&ca, WORKLOAD);
    let crl = crl_revoking(&ca, &revoked);

    let (ok, output) = openssl_crl_verify(&crl, &intermediate_der(&ca));
    assert!(ok, "openssl crl: {output}");

    // Negative controls: another CA's intermediate, and one flipped signature bit.
    let (ok, output) = openssl_crl_verify(&crl, &intermediate_der(&other));
    assert!(!ok, "verified by a foreign intermediate: {output}");
    assert!(output.contains("verify failure"), "{output}");
    let mut tampered = crl.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let (ok, output) = openssl_crl_verify(&tampered, &intermediate_der(&ca));
    assert!(!ok, "tampered CRL verified: {output}");
    assert!(output.contains("verify failure"), "{output}");
}

#[test]
fn openssl_verify_rejects_the_revoked_leaf_and_accepts_the_other() {
    let (_dir, ca) = new_ca();
    let revoked = issue(&ca, WORKLOAD);
    let kept = issue(&ca, OTHER_WORKLOAD);
    assert_ne!(serial_of(&revoked), serial_of(&kept));
    let crl = crl_revoking(&ca, &revoked);

    let (ok, output) = openssl_verify_with_crl(&ca, &crl, &kept.cert_chain_der[0]);
    assert!(ok, "the unrevoked leaf: {output}");

    let (ok, output) = openssl_verify_with_crl(&ca, &crl, &revoked.cert_chain_der[0]);
    assert!(!ok, "the revoked leaf passed: {output}");
    assert!(output.contains("certificate revoked"), "{output}");

    // Control: the same chain verifies without the CRL check, so the CRL is what refused it.
    let (ok, output) = openssl_verify(
        &root_der(&ca),
        &intermediate_der(&ca),
        &revoked.cert_chain_der[0],
        at(Duration::from_secs(120)),
        "sslclient",
    );
    assert!(ok, "the revoked leaf without -crl_check: {output}");
}

#[test]
fn an_empty_crl_passes_both_leaves() {
    let (_dir, ca) = new_ca();
    let leaves = [issue(&ca, WORKLOAD), issue(&ca, OTHER_WORKLOAD)];
    let crl = ca
        .crl(&[], t0_seconds() + 60, t0_seconds() + 3660, 1)
        .unwrap();
    let (ok, output) = openssl_crl_verify(&crl, &intermediate_der(&ca));
    assert!(ok, "openssl crl: {output}");
    for leaf in &leaves {
        let (ok, output) = openssl_verify_with_crl(&ca, &crl, &leaf.cert_chain_der[0]);
        assert!(ok, "{output}");
    }
}

#[test]
fn x509_parser_reads_the_entries_times_and_extensions() {
    let (_dir, ca) = new_ca();
    let revoked = issue(&ca, WORKLOAD);
    let kept = issue(&ca, OTHER_WORKLOAD);
    let crl_der = crl_revoking(&ca, &revoked);
    let (rest, crl) = CertificateRevocationList::from_der(&crl_der).unwrap();
    assert!(rest.is_empty());

    let signer_der = intermediate_der(&ca);
    let intermediate = parse(&signer_der);
    crl.verify_signature(intermediate.public_key()).unwrap();
    let (_other_dir, other) = new_ca();
    let foreign_der = intermediate_der(&other);
    let foreign = parse(&foreign_der);
    assert!(crl.verify_signature(foreign.public_key()).is_err());

    assert_eq!(crl.version().map(|v| v.0), Some(1), "X.509 v2 CRL");
    assert_eq!(crl.issuer(), intermediate.subject());
    assert_eq!(crl.last_update().timestamp(), t0_seconds() + 60);
    assert_eq!(
        crl.next_update().map(|t| t.timestamp()),
        Some(t0_seconds() + 3660)
    );
    assert_eq!(
        crl.crl_number().map(ToString::to_string),
        Some(CRL_NUMBER.to_string())
    );

    // The authority key identifier is the intermediate's, as in the leaves it signed.
    let (intermediate_ski, _) = key_identifiers(&intermediate);
    let (_, leaf_aki) = key_identifiers(&parse(&revoked.cert_chain_der[0]));
    let crl_aki = crl
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        });
    assert!(intermediate_ski.is_some());
    assert_eq!(crl_aki, intermediate_ski);
    assert_eq!(crl_aki, leaf_aki);

    // Exactly the revoked leaf, with its revocation time and no reason code.
    let entries: Vec<_> = crl.iter_revoked_certificates().collect();
    assert_eq!(entries.len(), 1);
    let entry = entries[0];
    assert_eq!(serial_from_bytes(entry.raw_serial()), serial_of(&revoked));
    assert_eq!(hex::encode(entry.raw_serial()), revoked.serial_hex);
    assert_ne!(serial_from_bytes(entry.raw_serial()), serial_of(&kept));
    assert_eq!(entry.revocation_date.timestamp(), t0_seconds() + 30);
    assert!(entry.reason_code().is_none());
    assert!(entry.extensions().is_empty());
}

#[test]
fn many_entries_keep_their_serials_and_order() {
    let (_dir, ca) = new_ca();
    let leaves: Vec<_> = (0..5).map(|_| issue(&ca, WORKLOAD)).collect();
    let revoked: Vec<_> = leaves
        .iter()
        .enumerate()
        .map(|(i, svid)| RevokedSerial {
            serial: serial_of(svid),
            revoked_at: t0_seconds() + i64::try_from(i).unwrap(),
        })
        .collect();
    let crl_der = ca
        .crl(&revoked, t0_seconds() + 60, t0_seconds() + 3660, u64::MAX)
        .unwrap();
    let (_, crl) = CertificateRevocationList::from_der(&crl_der).unwrap();
    let listed: Vec<_> = crl
        .iter_revoked_certificates()
        .map(|entry| RevokedSerial {
            serial: serial_from_bytes(entry.raw_serial()),
            revoked_at: entry.revocation_date.timestamp(),
        })
        .collect();
    assert_eq!(listed, revoked);
    assert_eq!(
        crl.crl_number().map(ToString::to_string),
        Some(u64::MAX.to_string())
    );
    for leaf in &leaves {
        let (ok, output) = openssl_verify_with_crl(&ca, &crl_der, &leaf.cert_chain_der[0]);
        assert!(!ok && output.contains("certificate revoked"), "{output}");
    }
    let kept = issue(&ca, WORKLOAD);
    let (ok, output) = openssl_verify_with_crl(&ca, &crl_der, &kept.cert_chain_der[0]);
    assert!(ok, "a leaf not listed: {output}");
}
