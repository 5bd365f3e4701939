//! `SpiffeBundle::parse` on any bytes: never panics, and a bundle it accepts
//! can be written back out (`to_json`, `to_jwks_json`, PEM) and re-read to the
//! same bundle. Seed with `fuzz/seeds/spiffe_bundle`: certificates inside the
//! JSON are out of the fuzzer's reach otherwise.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly_sdk::TrustDomain;
use mayfly_sdk::bundle::{JwtPublicKey, SpiffeBundle};

fuzz_target!(|document: &[u8]| {
    let trust_domain = TrustDomain::new("example.org").expect("a valid trust domain");
    let Ok(bundle) = SpiffeBundle::parse(trust_domain.clone(), document) else {
        return;
    };

    let written = bundle
        .to_json()
        .expect("a parsed bundle's certificates and keys can be written back");
    let reread = SpiffeBundle::parse(trust_domain.clone(), written.as_bytes())
        .expect("to_json output re-parses");
    assert_eq!(
        reread,
        canonical(&bundle),
        "to_json then parse changed the bundle"
    );
    assert_eq!(
        reread.to_json().as_deref(),
        Ok(written.as_str()),
        "to_json is not stable"
    );

    let jwks: serde_json::Value =
        serde_json::from_str(&bundle.to_jwks_json().expect("JWKS output")).expect("JWKS is JSON");
    assert_eq!(
        jwks["keys"].as_array().map(Vec::len),
        Some(bundle.jwt_authorities.len())
    );
    let pem = bundle.x509_authorities_pem();
    assert_eq!(
        pem.matches("-----BEGIN CERTIFICATE-----").count(),
        bundle.x509_authorities.len()
    );
});

/// `bundle` as `to_json` writes it: RSA integers in their minimal form (RFC
/// 7518 §2), which `parse` does not insist on.
fn canonical(bundle: &SpiffeBundle) -> SpiffeBundle {
    let mut canonical = bundle.clone();
    for authority in &mut canonical.jwt_authorities {
        if let JwtPublicKey::Rsa { n, e } = &mut authority.public_key {
            strip_leading_zeros(n);
            strip_leading_zeros(e);
        }
    }
    canonical
}

fn strip_leading_zeros(bytes: &mut Vec<u8>) {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.drain(..first);
}
