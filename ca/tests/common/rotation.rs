//! Helpers for rotation tests: reading the journal as plain JSON (not through the crate's
//! types), finding files, building the earlier layout, and verifying against a whole bundle.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_ca::{
    AuthorityKind, AuthorityState, CaConfig, CaStatus, CertificateAuthority, IssuedX509Svid,
    X509SvidRequest,
};
use mayfly_sdk::bundle::{JwtPublicKey, SpiffeBundle};
use serde_json::Value;

use super::{hostile_csr, p256_key, pem, spiffe_id, unix};

pub const JOURNAL: &str = "rotation.json";

/// The journal as plain JSON.
pub fn journal(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(JOURNAL)).unwrap()).unwrap()
}

/// The journal records of `kind` in `state` (`"root"`, `"active"`, ...).
pub fn records(dir: &Path, kind: &str, state: &str) -> Vec<Value> {
    journal(dir)["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["kind"] == kind && record["state"] == state)
        .cloned()
        .collect()
}

/// The one record of `kind` in `state`.
pub fn record(dir: &Path, kind: &str, state: &str) -> Value {
    let mut found = records(dir, kind, state);
    assert_eq!(found.len(), 1, "{kind} {state}: {found:?}");
    found.remove(0)
}

/// A file a record names (`"certificate"` or `"key"`).
pub fn file_of(dir: &Path, record: &Value, which: &str) -> PathBuf {
    dir.join(
        record[which]
            .as_str()
            .unwrap_or_else(|| panic!("no {which}: {record}")),
    )
}

/// Copies a journal-managed CA into `to` under the file names of the earlier layout, without
/// a journal: what a directory from before rotation looked like.
pub fn make_legacy_layout(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let copy = |record: &Value, which: &str, name: &str| {
        std::fs::copy(file_of(from, record, which), to.join(name)).unwrap();
    };
    let root = record(from, "root", "active");
    copy(&root, "key", "root.key");
    copy(&root, "certificate", "root.crt");
    let intermediate = record(from, "intermediate", "active");
    copy(&intermediate, "key", "intermediate.key");
    copy(&intermediate, "certificate", "intermediate.crt");
    copy(&record(from, "jwt-key", "active"), "key", "jwt.key");
}

/// Loads the CA in `dir` again and checks it is the same CA as `ca`: same status, bundle,
/// signers and generation.
pub fn assert_restart_keeps_state(
    dir: &Path,
    config: &CaConfig,
    ca: &CertificateAuthority,
    now: SystemTime,
) -> CertificateAuthority {
    let (again, report) = CertificateAuthority::load_or_create(dir, config, now).unwrap();
    assert!(report.files.is_empty(), "restart wrote {:?}", report.files);
    assert_eq!(again.status(now), ca.status(now));
    assert_eq!(again.generation(), ca.generation());
    assert!(
        again.bundle(1, Duration::from_secs(60)) == ca.bundle(1, Duration::from_secs(60)),
        "bundle differs after restart"
    );
    assert_eq!(again.root_certificate_pem(), ca.root_certificate_pem());
    assert_eq!(
        again.intermediate_certificate_der(),
        ca.intermediate_certificate_der()
    );
    assert_eq!(again.jwt_signer().key_id(), ca.jwt_signer().key_id());
    again
}

/// Issues an X509-SVID for a fresh key, with `ttl`, at `now`.
pub fn issue_at(ca: &CertificateAuthority, now: SystemTime, ttl: Duration) -> IssuedX509Svid {
    let csr = hostile_csr(&p256_key());
    let id = spiffe_id("spiffe://example.org/workload");
    ca.issue_x509_svid(&X509SvidRequest {
        csr_der: &csr,
        spiffe_id: &id,
        dns_names: &[],
        ttl,
        now,
    })
    .unwrap()
}

/// `openssl verify -x509_strict` of a leaf whose chain is `[leaf, intermediate]`, trusting
/// exactly the certificates in `roots_pem` (one or more PEM blocks), at `time`.
pub fn openssl_verify_chain(
    roots_pem: &str,
    chain: &[Vec<u8>],
    time: SystemTime,
) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, roots_pem).unwrap();
    let intermediate = dir.path().join("intermediate.pem");
    std::fs::write(&intermediate, pem("CERTIFICATE", &chain[1])).unwrap();
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&leaf, pem("CERTIFICATE", &chain[0])).unwrap();
    let output = Command::new("openssl")
        .arg("verify")
        .arg("-x509_strict")
        .args(["-purpose", "sslclient"])
        .args(["-attime", &unix(time).to_string()])
        .arg("-CAfile")
        .arg(&roots)
        .arg("-untrusted")
        .arg(&intermediate)
        .arg(&leaf)
        .output()
        .expect("the openssl CLI must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let ok = output.status.success() && text.contains(&format!("{}: OK", leaf.display()));
    (ok, text)
}

/// The PEM of every X.509 authority in a bundle: what a relying party trusts.
pub fn bundle_roots_pem(bundle: &SpiffeBundle) -> String {
    bundle
        .x509_authorities
        .iter()
        .map(|der| pem("CERTIFICATE", der))
        .collect()
}

/// The `kid` in a JWT's header.
pub fn token_key_id(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_string()
}

/// Verifies an ES256 JWT with the key its `kid` names in `bundle`, from the published x/y
/// alone (aws-lc-rs, not this crate's signer). `Err` says why not.
pub fn verify_jwt_with_bundle(token: &str, bundle: &SpiffeBundle) -> Result<(), String> {
    let kid = token_key_id(token);
    let authority = bundle
        .jwt_authorities
        .iter()
        .find(|authority| authority.key_id == kid)
        .ok_or_else(|| format!("kid {kid} is not in the bundle"))?;
    let JwtPublicKey::EcP256 { x, y } = &authority.public_key else {
        return Err("not a P-256 key".to_string());
    };
    let mut point = vec![0x04];
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| "bad signature".to_string())
}

/// The IDs in `status` of `kind` in `state`.
pub fn ids_in(status: &CaStatus, kind: AuthorityKind, state: AuthorityState) -> Vec<String> {
    status
        .authorities
        .iter()
        .filter(|authority| authority.kind == kind && authority.state == state)
        .map(|authority| authority.id.clone())
        .collect()
}
